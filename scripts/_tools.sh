# Sourced by scripts/lock and scripts/check-latest-deps: a pinned uv in .tools/ (gitignored).
# uv resolves the lock (universal: every platform and Python >= 3.11, with the hashes of
# every file); pip installs it. Bump UV_VERSION deliberately, like any other pin.
UV_VERSION=0.13.9

. scripts/venv.sh

ensure_uv() {
    local tools=.tools
    if [ "$("$tools/bin/uv" --version 2>/dev/null | cut -d' ' -f2)" != "$UV_VERSION" ]; then
        rm -rf "$tools"
        "$(find_python)" -m venv "$tools"
        "$tools/bin/python" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
    fi
    UV="$PWD/$tools/bin/uv"
}
