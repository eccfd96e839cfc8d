"""The one interface every authentication backend implements.

The c2s stream state machine (``xmppd.stream``) never calls a backend itself: it emits
an event, the trio shell awaits the backend and feeds the answer back. Backends are
async because they touch a database; they run their blocking SQL in worker threads
(``trio.to_thread.run_sync``) and never on the event loop thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

ScramHash = Literal["sha1", "sha256"]


class LoginGate(Protocol):
    """The failed-login limiter as a backend sees it (``xmppd.auth.ratelimit.LoginAttempt``)."""

    def claim(self, account: str) -> None:
        """Hold a place for ``account``; raises ``AuthError('temporary-auth-failure')``."""
        ...


@dataclass(frozen=True, slots=True)
class AuthContext:
    """Where a login attempt comes from; feeds rate limits and phpBB's optional checks."""

    peer_ip: str
    transport: Literal["tcp", "tls", "bosh", "websocket", "test"] = "tcp"
    secure: bool = False
    user_agent: str | None = None
    #: The attempt's hold on the failed-login limits; ``None`` where nothing limits.
    gate: LoginGate | None = None


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated account.

    ``localpart`` is the JID localpart, already normalised and XEP-0106 escaped;
    ``display_name`` is the human name (the forum username for the phpbb backend).
    """

    localpart: str
    display_name: str | None = None
    user_id: int | None = None
    extra: dict[str, str] = field(default_factory=dict)
    #: How the backend proved this login, kept with the session for backends that
    #: re-check live sessions (phpBB: :class:`xmppd.auth.phpbb_sessions.ForumLogin`). It may hold
    #: a bearer secret: memory only, out of ``repr`` and comparisons, never logged.
    login: object | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class ScramCredentials:
    """What RFC 5802 lets a server store instead of a password."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes


class AuthError(Exception):
    """A login that failed; ``condition`` is the RFC 6120 §6.5 SASL failure condition."""

    def __init__(self, condition: str = "not-authorized", text: str | None = None) -> None:
        super().__init__(text or condition)
        self.condition = condition
        self.text = text


def claim_account(ctx: AuthContext | None, account: str) -> None:
    """Tell the limiter which account this attempt is for, *before* checking the secret.

    ``account`` must be the account as the backend resolved it (a stable id, a
    normalised localpart), so every spelling that reaches one account shares one
    budget. Raises ``AuthError('temporary-auth-failure')`` when that budget is spent.
    """
    if ctx is not None and ctx.gate is not None:
        ctx.gate.claim(account)


class Authenticator(Protocol):
    """A source of accounts.

    ``check_password`` serves SASL PLAIN (and any mechanism that ends with a cleartext
    secret); ``scram_credentials`` serves SCRAM-SHA-1/-256. A backend that cannot do
    SCRAM (the phpbb one: it holds bcrypt hashes and session ids) returns
    ``supports_scram() == False`` so the stream never offers SCRAM.

    Both must call :func:`claim_account` with the account they resolved before they
    check (or hand out what checks) a secret, and refuse names with control
    characters before any lookup: that is what the failed-login limits count.
    """

    name: str

    def supports_scram(self) -> bool: ...

    async def check_password(self, username: str, password: str, ctx: AuthContext) -> Identity:
        """Return the identity or raise :class:`AuthError`. ``username`` is the SASL authcid."""
        ...

    async def scram_credentials(
        self, username: str, hash_name: ScramHash, ctx: AuthContext | None = None
    ) -> tuple[Identity, ScramCredentials] | None:
        """Stored SCRAM keys, or ``None`` if unknown (the mechanism then fakes a salt)."""
        ...

    async def user_exists(self, localpart: str) -> bool:
        """Whether ``localpart`` names an account (RFC 6121 delivery rules need it)."""
        ...

    async def aclose(self) -> None: ...
