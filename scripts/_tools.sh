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

# build_requirements: pyproject.toml's [build-system] requires, one per line (what builds
# xmppd itself; both the lock and the canary install it, since pip runs without isolation).
build_requirements() {
    "$(find_python)" -c 'import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))'
}
