"""A real ejabberd 23.01 (Debian's) for the import tests: its own config, ports, Mnesia
spool and log directory, storage in Mnesia (the default) or in a scratch MariaDB database
with ejabberd's own schema.

Started with plain ``erl`` in the foreground, as the bench does
(bench/servers/ejabberd.py's ``erl_command``): Debian's ``ejabberdctl`` re-executes itself
as the ``ejabberd`` user, with that user's cookie and a fixed node name that a test cannot
own. The admin commands a site runs when it moves
out (``ejabberdctl dump FILE``, ``ejabberdctl export_piefxis DIR``) are the same
``ejabberd_commands`` reached through mod_http_api on loopback: no Erlang distribution,
no epmd, no cookie, and several of these servers can run side by side.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from bench.servers.ejabberd import erl_command
from tests.conftest import unavailable
from tests.xmppd_process import free_port

DOMAIN = "forum.test"
MUC_DOMAIN = f"conference.{DOMAIN}"
SQL_SCHEMA = Path("/usr/share/ejabberd/sql/mysql.sql")  # the default (old) schema, see README
MYSQL = {"host": "127.0.0.1", "port": 3306, "user": "root"}


def require_ejabberd() -> None:
    """Debian's ejabberd 23.01 with its MariaDB driver; fail in CI, skip elsewhere."""
    wanted = ("/usr/lib/x86_64-linux-gnu/ejabberd-23.01-1", "/usr/lib/erlang/lib/p1_mysql-*")
    missing = [p for p in wanted if not list(Path("/").glob(p.lstrip("/")))]
    if shutil.which("erl") and not missing:
        return
    unavailable(
        f"ejabberd 23.01 / erlang-p1-mysql not installed ({', '.join(missing) or 'erl'})",
        ".ci/run must install them",
    )


def mysql(database: str | None, sql: str) -> str:
    """Run SQL with the mariadb client as root on loopback (test setup only)."""
    argv = ["mariadb", "-h", MYSQL["host"], "-P", str(MYSQL["port"]), "-u", MYSQL["user"]]
    argv += ["--batch", "--skip-column-names"]
    if database:
        argv.append(database)
    done = subprocess.run(argv, input=sql, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"mariadb: {done.stderr.strip()}")
    return done.stdout


def _config(
    *,
    c2s_port: int,
    http_port: int,
    storage: str,
    password_format: str,
    scram_hash: str,
    database: str,
    sql_password: str,
) -> str:
    sql = ""
    if storage == "sql":
        sql = f"""
default_db: sql
auth_method: sql
sql_type: mysql
sql_server: "{MYSQL["host"]}"
sql_port: {MYSQL["port"]}
sql_database: "{database}"
sql_username: "{database}"
sql_password: "{sql_password}"
sql_pool_size: 2
new_sql_schema: false
"""
    return f"""# written by tests/ejabberd_fixture.py
hosts:
  - {DOMAIN}
loglevel: info
log_rotate_count: 0
certfiles: []
{"" if storage == "sql" else "auth_method: internal"}
auth_password_format: {password_format}
auth_scram_hash: {scram_hash}
registration_timeout: infinity
{sql}
listen:
  -
    port: {c2s_port}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls: false
    shaper: none
    access: c2s
  -
    port: {http_port}
    ip: "127.0.0.1"
    module: ejabberd_http
    request_handlers:
      /api: mod_http_api

acl:
  loopback:
    ip:
      - 127.0.0.0/8

access_rules:
  c2s:
    allow: all
  register:  # matched against the new JID only
    allow: all
  register_ip:  # matched against the client's address
    allow: loopback
  muc_create:
    allow: all

api_permissions:
  "loopback admin":
    from:
      - mod_http_api
    who:
      ip: 127.0.0.1/8
    what: "*"

shaper_rules: {{}}

modules:
  mod_disco: {{}}
  mod_caps: {{}}
  mod_ping: {{}}
  mod_last: {{}}
  mod_roster:
    versioning: true
  mod_offline:
    access_max_user_messages: max_user_offline_messages
  mod_vcard: {{}}
  mod_private: {{}}
  mod_http_api: {{}}
  mod_register:
    access: register
    ip_access: register_ip
  mod_mam:
    default: always
  mod_muc:
    host: {MUC_DOMAIN}
    access: all
    access_create: muc_create
    access_persistent: muc_create
    access_register: all
    history_size: 20
    min_message_interval: 0
    default_room_options:
      mam: true
"""


class Ejabberd:
    """One ejabberd node under ``base``: ``storage`` "mnesia" or "sql" (MariaDB)."""

    def __init__(
        self,
        base: Path,
        *,
        storage: str = "mnesia",
        password_format: str = "plain",
        scram_hash: str = "sha",
    ) -> None:
        self.base = base
        self.storage = storage
        self.password_format = password_format
        self.scram_hash = scram_hash
        # p1_mysql cannot log in without a password (it sends a scramble of ""), so the
        # scratch database gets its own user, as a real site's has
        self.database = f"ejabberd_{uuid.uuid4().hex[:12]}" if storage == "sql" else ""
        self.sql_password = uuid.uuid4().hex
        self.c2s_port = free_port()
        self.http_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        """The c2s port (what tests/slix.py's ``login`` connects to)."""
        return self.c2s_port

    @property
    def log_path(self) -> Path:
        return self.base / "log" / "ejabberd.log"

    def create_database(self) -> None:
        """A scratch database with ejabberd's own (old, default) MySQL schema."""
        mysql(
            None,
            f"CREATE DATABASE `{self.database}` CHARACTER SET utf8mb4;"
            f"CREATE USER '{self.database}'@'127.0.0.1' IDENTIFIED BY '{self.sql_password}';"
            f"GRANT ALL ON `{self.database}`.* TO '{self.database}'@'127.0.0.1';",
        )
        mysql(self.database, SQL_SCHEMA.read_text())

    def drop_database(self) -> None:
        if self.database:
            with contextlib.suppress(RuntimeError):
                mysql(
                    None,
                    f"DROP DATABASE IF EXISTS `{self.database}`;"
                    f"DROP USER IF EXISTS '{self.database}'@'127.0.0.1';",
                )

    def start(self, timeout: float = 90.0) -> None:
        for sub in ("db", "log"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        if self.storage == "sql" and not (self.base / "db.created").exists():
            self.create_database()
            (self.base / "db.created").write_text(self.database)
        config = self.base / "ejabberd.yml"
        config.write_text(
            _config(
                c2s_port=self.c2s_port,
                http_port=self.http_port,
                storage=self.storage,
                password_format=self.password_format,
                scram_hash=self.scram_hash,
                database=self.database,
                sql_password=self.sql_password,
            )
        )
        argv, env = erl_command(config, self.base / "db", self.base / "log")
        env |= {
            "EJABBERD_PID_PATH": str(self.base / "ejabberd.pid"),
            "CONTRIB_MODULES_CONF_DIR": str(self.base / "modules.d"),
            "HOME": str(self.base),
        }
        with open(self.base / "console.log", "ab") as console:
            self.proc = subprocess.Popen(
                argv,
                cwd=self.base,
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # stop() ends the whole tree (erl_child_setup…)
            )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"ejabberd exited during start-up: {self.tail()}")
            try:
                status = self.api("status")
                with socket.create_connection(("127.0.0.1", self.c2s_port), timeout=2):
                    pass
                if "started" in str(status) and self._storage_ready():
                    return
                last = str(status)
            except (OSError, RuntimeError) as exc:
                last = str(exc)
            time.sleep(0.3)
        raise TimeoutError(f"ejabberd not ready after {timeout:.0f} s ({last}): {self.tail()}")

    def _storage_ready(self) -> bool:
        """Mnesia is there once the node runs; SQL once a query went through."""
        if self.storage != "sql":
            return True
        with contextlib.suppress(OSError):
            if "p1_mysql_conn: init error" in self.log_path.read_text(errors="replace"):
                raise RuntimeError("ejabberd cannot log in to MariaDB")
        return isinstance(self.api("registered_users", host=DOMAIN), list)

    def tail(self, lines: int = 30) -> str:
        texts = []
        for path in (self.base / "console.log", self.log_path):
            with contextlib.suppress(OSError):
                texts.append("\n".join(path.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(texts)

    def api(self, command: str, timeout: float = 60.0, **args: Any) -> Any:
        """An ejabberdctl command through mod_http_api (loopback only)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=timeout)
        try:
            conn.request(
                "POST",
                f"/api/{command}",
                body=json.dumps(args),
                headers={"Content-Type": "application/json"},
            )
            reply = conn.getresponse()
            body = reply.read()
        finally:
            conn.close()
        if reply.status != 200:
            raise RuntimeError(f"{command}: HTTP {reply.status} {body[:300]!r}")
        return json.loads(body) if body else None

    def dump(self, path: Path) -> Path:
        """``ejabberdctl dump FILE``: the Mnesia tables as Erlang terms."""
        self.api("dump", file=str(path))
        return path

    def export_piefxis(self, directory: Path) -> list[Path]:
        """``ejabberdctl export_piefxis DIR``: XEP-0227 files, one per host plus an index."""
        directory.mkdir(parents=True, exist_ok=True)
        self.api("export_piefxis", dir=str(directory))
        return sorted(directory.iterdir())

    def stop(self, timeout: float = 20.0) -> None:
        """``stop`` through the API (Mnesia flushes its logs), then SIGTERM, then SIGKILL."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            if proc.poll() is None:
                with contextlib.suppress(OSError, RuntimeError, ValueError):
                    self.proc = proc
                    self.api("stop", timeout=5)
                self.proc = None
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout)
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(10)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
