"""``[push]``: XEP-0357 push notifications, shaped so ``xmppd.config`` holds it as
``config.push``. Values only, no I/O (layer 6 of ARCHITECTURE.md)."""

from __future__ import annotations

from dataclasses import dataclass

from xmppd.settings import ConfigError


@dataclass(slots=True)
class PushConfig:
    """What an account may register and how often its app servers hear from us."""

    #: Offer ``urn:xmpp:push:0`` on the accounts' disco#info and publish notifications.
    enabled: bool = True
    #: App server nodes one account may enable at once (``policy-violation`` beyond).
    max_registrations: int = 5
    #: Largest publish-options form a client may store with a registration (bytes of its
    #: serialised XML; ``not-acceptable`` beyond, nothing stored).
    max_options_bytes: int = 2048
    #: Seconds between two notifications to one registration while the earlier one is
    #: unanswered; messages in between only raise the next one's ``message-count``.
    min_interval: int = 10
    #: Allow the message body in notifications (``last-message-body``) for registrations
    #: whose publish-options ask for it (field ``include-body`` = true). Off by default:
    #: an app server (and the phone vendor's push service) then sees who wrote, not what.
    include_body: bool = False

    def validate(self) -> None:
        for key in ("max_registrations", "max_options_bytes"):
            if getattr(self, key) < 1:
                raise ConfigError.at(key, "must be at least 1")
        if self.min_interval < 0:
            raise ConfigError.at("min_interval", "must not be negative")
