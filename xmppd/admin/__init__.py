"""Operating a running server: the admin socket, its commands and the CLI's client side.

- :mod:`xmppd.admin.protocol` — one JSON request and one JSON response per connection;
- :mod:`xmppd.admin.listener` — the UNIX socket (file mode + ``SO_PEERCRED``) in the server;
- :mod:`xmppd.admin.commands` — what each command does to the running server;
- :mod:`xmppd.admin.client` — how ``xmppd <command>`` reaches it, or falls back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

import xmppd
from xmppd.admin.commands import make_dispatch
from xmppd.admin.listener import AdminListener, AdminSocketError, bind_admin_socket
from xmppd.config import Config
from xmppd.private_files import private_dir

if TYPE_CHECKING:
    from xmppd.server import Server

__all__ = ["AdminListener", "AdminSocketError", "open_admin", "start_admin"]


def open_admin(config: Config) -> AdminListener | None:
    """Bind the admin socket (None when ``admin.enabled`` is false).

    ``xmppd serve`` calls this before it opens anything else, so a second server on the
    same socket stops here (:class:`AdminSocketError`) with no port opened.
    """
    if not config.admin.enabled:
        return None
    path = config.admin_socket_path
    if not config.admin.socket:
        private_dir(config.data_path)  # the default lives in the private data directory
    sock, inode = bind_admin_socket(path, config.admin.group)
    return AdminListener(
        sock,
        inode,
        path,
        group=config.admin.group,
        timeout=config.admin.timeout,
        version=xmppd.__version__,
    )


async def start_admin(server: Server, nursery: trio.Nursery) -> None:
    """Serve ``server.admin`` (binding it now if ``xmppd serve`` did not) in ``nursery``."""
    if server.admin is None:
        server.admin = open_admin(server.config)
    if server.admin is not None:
        await nursery.start(server.admin.serve, make_dispatch(server))
