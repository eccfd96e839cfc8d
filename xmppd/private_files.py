"""Private files and directories: what xmppd writes is readable by xmppd alone.

The data directory holds SCRAM keys, offline messages, the room archive and the TLS key.
Created here, they are 0700 (directories) and 0600 (files) whatever the process umask,
because modes are given at creation (``mkdir``/``open`` with a mode, then ``chmod`` to
undo the umask's own bits). Existing paths are only tightened, never loosened: world
access is removed (and logged), group access is left as an administrator set it (the
systemd unit's ``StateDirectoryMode=0750`` gives a group read access on purpose).

SQLite creates its ``-wal`` and ``-shm`` files with the database file's mode, so a
database file made 0600 before SQLite opens it keeps its journals private too.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("xmppd.files")

DIR_MODE = 0o700
FILE_MODE = 0o600


def _remove_world_access(path: Path) -> None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return
    mode = stat.S_IMODE(st.st_mode)
    if not mode & 0o007 or st.st_uid != os.geteuid():
        return
    path.chmod(mode & ~0o007)
    log.warning("event=permissions_tightened path=%s was=%o now=%o", path, mode, mode & ~0o007)


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) 0700, or take world access off an existing one."""
    missing: list[Path] = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    for created in missing:  # mkdir's mode is filtered by the umask: set it exactly
        created.chmod(DIR_MODE)
    if not missing:
        _remove_world_access(path)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty 0600 unless it exists; take world access off an existing one."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        _remove_world_access(path)
        return path
    os.fchmod(fd, FILE_MODE)
    os.close(fd)
    return path


def check_secret_file(path: Path) -> None:
    """An existing secret someone else made (a TLS key): world access is taken off if the
    file is ours (logged, as above); if it is not ours and stays world-readable, say so."""
    _remove_world_access(path)
    try:
        st = path.stat()
    except OSError:
        return
    if stat.S_IMODE(st.st_mode) & 0o004:
        log.warning(
            "event=secret_world_readable path=%s mode=%o note=%s",
            path,
            stat.S_IMODE(st.st_mode),
            "not ours to change: chmod o-r it",
        )


def private_sqlite(database: str) -> None:
    """Make an SQLite database file (and any journals it left) private before it opens."""
    if database in ("", ":memory:") or database.startswith("file:"):
        return
    path = Path(database)
    private_dir(path.parent)
    private_file(path)
    for suffix in ("-wal", "-shm", "-journal"):
        _remove_world_access(path.with_name(path.name + suffix))
