"""The forum database connection of the phpBB backend: read-only, bounded, silent.

Only SELECTs are issued (the connection is also put in read-only mode where the driver
allows), in worker threads behind a capacity limiter and a timeout, so a slow forum
database degrades into ``temporary-auth-failure`` instead of a stuck server. Rows and
bound parameters hold SIDs and hashes: the engine hides bound parameters in its errors
and never logs, whatever level the application gives ``sqlalchemy.engine``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa
import trio

from xmppd.auth.base import AuthError
from xmppd.config import PhpbbConfig

log = logging.getLogger("xmppd.auth.phpbb")

T = TypeVar("T")

_ENGINE_LOG_NAME = "xmppd_phpbb"
_POOL_SIZE, _OVERFLOW = 5, 5


def _connect_args(url: sa.URL, timeout: float) -> dict[str, Any]:
    """Driver-level timeouts and read-only sessions for the drivers we know."""
    backend = url.get_backend_name()
    if backend == "mysql":
        return {
            "connect_timeout": timeout,
            "read_timeout": timeout,
            "write_timeout": timeout,
            "init_command": "SET SESSION TRANSACTION READ ONLY",
        }
    if backend == "postgresql":
        statement_ms = max(1, int(timeout * 1000))
        return {
            # libpq wants whole seconds and treats anything below 2 as 2
            "connect_timeout": max(2, math.ceil(timeout)),
            "options": f"-c statement_timeout={statement_ms} -c default_transaction_read_only=on",
        }
    return {}


class ForumDatabase:
    """The pooled engine on ``auth.phpbb.url`` and the one way to run a query on it."""

    def __init__(self, config: PhpbbConfig) -> None:
        self._timeout = config.query_timeout
        url = sa.make_url(config.url)
        pool: dict[str, Any] = {}
        if url.get_backend_name() in ("mysql", "postgresql"):
            pool = {
                "pool_size": _POOL_SIZE,
                "max_overflow": _OVERFLOW,
                "pool_timeout": config.query_timeout,
                "pool_recycle": 1800,
                "pool_pre_ping": True,
            }
        logging.getLogger(f"sqlalchemy.engine.Engine.{_ENGINE_LOG_NAME}").setLevel(logging.WARNING)
        logging.getLogger(f"sqlalchemy.pool.impl.QueuePool.{_ENGINE_LOG_NAME}").setLevel(
            logging.WARNING
        )
        self.engine = sa.create_engine(
            url,
            connect_args=_connect_args(url, config.query_timeout),
            hide_parameters=True,
            logging_name=_ENGINE_LOG_NAME,
            pool_logging_name=_ENGINE_LOG_NAME,
            **pool,
        )
        self._limiter = trio.CapacityLimiter(_POOL_SIZE + _OVERFLOW)

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await trio.to_thread.run_sync(self.engine.dispose)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking SQL in a worker thread, bounded by ``query_timeout``."""
        with trio.move_on_after(self._timeout):
            try:
                return await trio.to_thread.run_sync(
                    fn, *args, limiter=self._limiter, abandon_on_cancel=True
                )
            except (sa.exc.SQLAlchemyError, OSError) as exc:
                # the engine hides bound parameters, and only the class name is logged
                log.warning("phpbb database error error=%s", type(exc).__name__)
                raise AuthError("temporary-auth-failure") from None
            except Exception:  # a bug here must not take the stream down with it
                log.exception("phpbb backend error")
                raise AuthError("temporary-auth-failure") from None
        log.warning("phpbb database timeout seconds=%s", self._timeout)
        raise AuthError("temporary-auth-failure")
