"""The ``xmppd`` command line, run as users run it (a subprocess), and the example config.

``xmppd.toml.example`` is loaded with the real loader and compared with the defaults, so
an option added to ``xmppd/config.py`` without being documented there fails here.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import subprocess
import sys
import tomllib
import typing
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.db_fixtures import temporary_database
from tests.slix import AuthFailed, login, run
from tests.xmppd_process import XmppdProcess, make_server
from xmppd.config import Config, load_config

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "xmppd.toml.example"


def xmppd(
    config: Path | None,
    *args: str,
    stdin: str = "",
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """``python -m xmppd [--config CONFIG] ARGS`` with a clean XMPPD_* environment."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("XMPPD_")}
    environ.update(env or {})
    # The checkout under test, also when cwd is elsewhere (not the editable install).
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environ.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "xmppd"]
    if config is not None:
        cmd += ["--config", str(config)]
    return subprocess.run(
        [*cmd, *args],
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=environ,
        cwd=cwd or (config.parent if config else None),
        timeout=60,
        check=False,
    )


def write_config(tmp: Path, text: str = "") -> Path:
    path = tmp / "xmppd.toml"
    path.write_text(f'[server]\ndata_dir = "{tmp / "data"}"\n{text}', encoding="utf-8")
    return path


# ---------------------------------------------------------------- the example file


def _fields(cls: Any, prefix: str = "") -> dict[str, Any]:
    """Every leaf option of a config dataclass as ``section.key`` -> default."""
    out: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    default = cls()
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            out.update(_fields(hints[f.name], f"{key}."))
        else:
            value = getattr(default, f.name)
            if isinstance(value, list):  # e.g. [[muc.rooms]]: tables, compared as dicts
                value = [dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for v in value]
            out[key] = value
    return out


_TABLE_ARRAYS = {"components"}


def _keys(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in table.items():
        if isinstance(value, dict):
            out.update(_keys(value, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = value
    return out


def test_example_config_lists_every_option_with_its_default() -> None:
    options = _fields(Config)
    written = _keys(tomllib.loads(EXAMPLE.read_text(encoding="utf-8")))
    # An empty array of tables (``[[components]]``) cannot be written without blocking
    # the ``[[…]]`` form a user would add, so the file documents it in comments.
    options = {k: v for k, v in options.items() if not (v == [] and k in _TABLE_ARRAYS)}
    missing = sorted(set(options) - set(written))
    assert not missing, f"add these options to xmppd.toml.example: {missing}"
    assert set(written) == set(options)  # unknown keys would not load anyway
    wrong = {k: (written[k], options[k]) for k in options if written[k] != options[k]}
    assert not wrong, f"xmppd.toml.example differs from the defaults (example, default): {wrong}"


def test_example_config_loads_to_the_defaults() -> None:
    assert load_config(EXAMPLE, environ={}) == Config()


def test_example_config_comments_every_option() -> None:
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if "=" in line and not line.startswith(("#", "[")):
            above = lines[i - 1]
            # tls.cert and tls.key share one comment.
            assert above.startswith("#") or lines[i - 1].startswith("cert ="), line


def test_check_config_accepts_the_example(tmp_path: Path) -> None:
    result = xmppd(EXAMPLE, "check-config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "configuration OK: domain=localhost auth=internal" in result.stdout


# ---------------------------------------------------------------- check-config


@pytest.mark.parametrize(
    ("text", "env", "key"),
    [
        ("[c2s]\nport = 70000\n", {}, "c2s.port"),
        ('[c2s]\nport = "lots"\n', {}, "c2s.port"),
        ("", {"XMPPD_C2S_PORT": "lots"}, "c2s.port"),
        ('[c2s]\nrequire_encryption = "maybe"\n', {}, "c2s.require_encryption"),
        ('[auth]\nbackend = "ldap"\n', {}, "auth.backend"),
        ('[auth]\nbackend = "phpbb"\n', {}, "auth.phpbb.url"),
        ("[auth.phpbb]\nrecheck_interval = 0.2\n", {}, "auth.phpbb.recheck_interval"),
        ("[limits]\nmax_stanza_size = 100\n", {}, "limits.max_stanza_size"),
        ("[c2s]\nprot = 5222\n", {}, "prot"),
        ('[tls]\ncert = "/etc/cert.pem"\n', {}, "tls"),
    ],
)
def test_check_config_names_the_bad_key(
    tmp_path: Path, text: str, env: dict[str, str], key: str
) -> None:
    result = xmppd(write_config(tmp_path, text), "check-config", env=env)
    assert result.returncode == 2, result
    assert "configuration error" in result.stderr
    assert key in result.stderr
    assert "Traceback" not in result.stderr


def test_a_tls_pair_that_does_not_load_is_a_configuration_error(tmp_path: Path) -> None:
    """check-config (the unit's ExecStartPre) and serve name tls.key for a key that is not
    the certificate's, like any bad key: exit status 2, no traceback."""
    from tests.certs import write_pair

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    write_pair(cert, tmp_path / "other.pem", "a")
    write_pair(tmp_path / "other-cert.pem", key, "b")
    path = write_config(tmp_path, f'[tls]\ncert = "{cert}"\nkey = "{key}"\n')
    for command in ("check-config", "serve"):
        result = xmppd(path, command)
        assert result.returncode == 2, result
        assert "configuration error: tls.key:" in result.stderr
        assert "Traceback" not in result.stderr


def test_check_config_broken_toml_and_missing_file(tmp_path: Path) -> None:
    result = xmppd(write_config(tmp_path, "[c2s\n"), "check-config")
    assert result.returncode == 2
    assert "xmppd.toml" in result.stderr
    result = xmppd(tmp_path / "nope.toml", "check-config", cwd=tmp_path)
    assert result.returncode == 2
    assert "does not exist" in result.stderr


def test_an_old_config_with_the_retired_idle_timeout_still_loads(tmp_path: Path) -> None:
    """c2s.idle_timeout never did anything and left the example: a file copied from the
    old example starts, with one warning saying to remove the key."""
    result = xmppd(write_config(tmp_path, "[c2s]\nidle_timeout = 300.0\n"), "check-config")
    assert result.returncode == 0, result.stderr
    assert "configuration OK" in result.stdout
    assert result.stderr.count("event=config_retired key=c2s.idle_timeout") == 1, result.stderr


def test_env_overrides_apply(tmp_path: Path) -> None:
    env = {"XMPPD_SERVER_DOMAIN": "Chat.Example.ORG", "XMPPD_AUTH_BACKEND": "internal"}
    result = xmppd(write_config(tmp_path), "check-config", env=env)
    assert result.returncode == 0, result.stderr
    assert "domain=chat.example.org" in result.stdout


def test_config_found_in_working_directory_and_via_env(tmp_path: Path) -> None:
    (tmp_path / "xmppd.toml").write_text('[server]\ndomain = "cwd.example"\n', encoding="utf-8")
    result = xmppd(None, "check-config", cwd=tmp_path)
    assert "domain=cwd.example" in result.stdout, result.stderr
    other = tmp_path / "other.toml"
    other.write_text('[server]\ndomain = "env.example"\n', encoding="utf-8")
    result = xmppd(None, "check-config", cwd=tmp_path, env={"XMPPD_CONFIG": str(other)})
    assert "domain=env.example" in result.stdout, result.stderr


# ---------------------------------------------------------------- db upgrade


@pytest.mark.parametrize("kind", ["sqlite", "mariadb", "postgresql"])
def test_db_upgrade(tmp_path: Path, kind: str) -> None:
    config = write_config(tmp_path)
    with temporary_database(kind) as url:  # type: ignore[arg-type]
        env = {"XMPPD_DATABASE_URL": url}
        for _ in range(2):  # idempotent
            result = xmppd(config, "db", "upgrade", env=env)
            assert result.returncode == 0, result.stderr
            assert "database is up to date" in result.stdout
        engine = sa.create_engine(url)
        try:
            tables = set(sa.inspect(engine).get_table_names())
        finally:
            engine.dispose()
        assert {"users", "alembic_version"} <= tables


def test_db_upgrade_default_is_sqlite_in_data_dir(tmp_path: Path) -> None:
    result = xmppd(write_config(tmp_path), "db", "upgrade")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "data" / "xmppd.sqlite3").is_file()


def test_data_dir_database_and_key_are_private_whatever_the_umask(tmp_path: Path) -> None:
    """SCRAM keys, offline messages, the archive and the TLS key are nobody else's business."""
    data = tmp_path / "data"
    old = os.umask(0o022)  # the server inherits the usual, permissive umask
    try:
        server = make_server(tmp_path, server={"data_dir": str(data)})
        server.start()
    finally:
        os.umask(old)
    try:
        created = sorted(data.rglob("*"))
        names = {p.name for p in created}
        assert {"xmppd.sqlite3", "xmppd.sqlite3-wal", "tls", "key.pem"} <= names, names
        for path in [data, *created]:
            mode = stat.S_IMODE(path.stat().st_mode)
            if path.name == "cert.pem":
                continue  # public by nature
            assert mode == (0o700 if path.is_dir() else 0o600), f"{path}: {mode:o}"
    finally:
        server.stop()


def test_existing_world_readable_data_loses_world_access(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    db = data / "xmppd.sqlite3"
    db.touch()
    db.chmod(0o644)
    result = xmppd(config, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(data.stat().st_mode) == 0o750
    assert stat.S_IMODE(db.stat().st_mode) == 0o640
    assert "event=permissions_tightened" in result.stderr


# ---------------------------------------------------------------- user accounts


def _can_login(server: XmppdProcess, jid: str, password: str) -> bool:
    async def scenario() -> bool:
        try:
            client = await login(server, jid, password, send_presence=False, get_roster=False)
        except AuthFailed:
            return False
        await client.close()
        return True

    return run(scenario)


def test_user_add_list_passwd_del(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    config = server.config_path
    first, second = "först-Pässword ☃", "zweites Passwort"

    result = xmppd(config, "user", "add", "alice", "--password-stdin", stdin=first + "\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "created alice@localhost"
    result = xmppd(config, "user", "add", "Bob", "--password-stdin", stdin="bobs password\n")
    assert result.returncode == 0, result.stderr

    again = xmppd(config, "user", "add", "alice", "--password-stdin", stdin="x\n")
    assert again.returncode == 1
    assert "already exists" in again.stderr

    result = xmppd(config, "user", "list")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["alice@localhost", "bob@localhost"]

    server.start()
    try:
        assert _can_login(server, "alice@localhost/cli", first)
        result = xmppd(config, "user", "passwd", "alice", "--password-stdin", stdin=second + "\n")
        assert result.returncode == 0, result.stderr
        assert "password changed for alice@localhost" in result.stdout
        # A running server sees CLI changes after its credential cache TTL; restart now.
        server.restart()
        assert not _can_login(server, "alice@localhost/cli", first)
        assert _can_login(server, "alice@localhost/cli", second)

        result = xmppd(config, "user", "del", "alice")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "deleted alice@localhost"
        server.restart()
        assert not _can_login(server, "alice@localhost/cli", second)
    finally:
        server.stop()
    assert first not in server.log() and second not in server.log()

    assert xmppd(config, "user", "list").stdout.split() == ["bob@localhost"]
    gone = xmppd(config, "user", "del", "alice")
    assert gone.returncode == 1
    assert "no such user" in gone.stderr
    nobody = xmppd(config, "user", "passwd", "carol", "--password-stdin", stdin="pw\n")
    assert nobody.returncode == 1
    assert "no such user" in nobody.stderr


def test_user_add_rejects_empty_password(tmp_path: Path) -> None:
    result = xmppd(write_config(tmp_path), "user", "add", "alice", "--password-stdin", stdin="\n")
    assert result.returncode != 0
    assert "empty password" in result.stderr


def test_user_commands_refused_with_phpbb_backend(tmp_path: Path) -> None:
    text = '[auth]\nbackend = "phpbb"\n[auth.phpbb]\nurl = "sqlite:///forum.db"\n'
    result = xmppd(write_config(tmp_path, text), "user", "add", "alice", "--password-stdin")
    assert result.returncode == 2
    assert "forum" in result.stderr


def test_scripts_are_valid_bash() -> None:
    scripts = ("run", "test", ".ci/run", "scripts/lock", "scripts/check-latest-deps")
    for name in (*scripts, "scripts/venv.sh", "scripts/_tools.sh"):
        path = ROOT / name
        assert path.is_file(), name
        subprocess.run(["bash", "-n", str(path)], check=True)
    for name in scripts:
        assert os.access(ROOT / name, os.X_OK), name
