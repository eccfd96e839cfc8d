# Sourced by ./run, ./test and scripts/*: find a Python >= 3.11 and keep .venv installed
# from a lock file (exact versions, every file's sha256), so what runs never depends on
# what the package index serves that day.

find_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
        [ -n "$candidate" ] || continue
        command -v "$candidate" >/dev/null 2>&1 || continue
        if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "xmppd needs Python >= 3.11 (set PYTHON=/path/to/python3.11 or newer)" >&2
    return 1
}

# check_build_prerequisites LOCK: PyICU (Unicode TR39 checks on room nicks) has no wheels and
# builds against the system's ICU; say what to install instead of pip's page of errors.
check_build_prerequisites() {
    grep -qi '^pyicu==' "$1" || return 0
    if command -v pkg-config >/dev/null 2>&1 && pkg-config --exists icu-i18n \
        && command -v c++ >/dev/null 2>&1; then
        return 0
    fi
    echo "xmppd: building PyICU needs ICU's headers, pkg-config and a C++ compiler:" \
        "apt-get install python3-dev libicu-dev pkg-config g++ (Debian, Ubuntu) or" \
        "dnf install python3-devel libicu-devel pkgconf gcc-c++ (Fedora)" >&2
    return 1
}

# install_locked VENV LOCK: install LOCK's pinned, hashed packages into VENV, then xmppd
# itself (editable, no dependencies of its own, built by the lock's setuptools).
install_locked() {
    local venv="$1" lock="$2"
    check_build_prerequisites "$lock"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        --require-hashes --no-deps -r "$lock"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        --no-deps --no-build-isolation -e .
}

# ensure_venv LOCK: create .venv if missing or broken, and install LOCK (plus xmppd) only
# when a lock or pyproject.toml changed since the last install. requirements-test.lock holds
# everything requirements.lock does at the same versions, so either stamp satisfies ./run.
ensure_venv() {
    local lock="$1" stamp want
    if ! .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        local python
        python="$(find_python)"
        rm -rf .venv
        echo "creating .venv with $("$python" --version)" >&2
        "$python" -m venv .venv
    fi
    want="$(cat requirements.lock requirements-test.lock pyproject.toml | sha256sum | cut -d' ' -f1)"
    for stamp in ".venv/.xmppd-installed-$lock" .venv/.xmppd-installed-requirements-test.lock; do
        if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
            return 0
        fi
    done
    echo "installing xmppd and $lock into .venv" >&2
    install_locked .venv "$lock"
    echo "$want" >".venv/.xmppd-installed-$lock"
}
