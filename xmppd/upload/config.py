"""``[upload]``: XEP-0363 HTTP file upload, shaped so ``xmppd.config`` holds it as
``config.upload``. Sans-IO: it imports no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from xmppd.settings import ConfigError


@dataclass(slots=True)
class UploadConfig:
    """The upload service (``upload.<domain>``) and its HTTP routes under ``/upload/``."""

    #: Offer the service (disco item ``upload.<domain>``, routes on the HTTP port; none
    #: while ``http.enabled`` is false).
    enabled: bool = True
    #: The service's JID; empty: ``upload.<server.domain>``.
    host: str = ""
    #: Largest file one slot may be for (bytes; advertised as ``max-file-size``, §2).
    max_file_size: int = 10 * 1024 * 1024
    #: Bytes one account may have stored (and reserved by open slots) at once.
    quota_per_user: int = 100 * 1024 * 1024
    #: Slot requests one account may make per minute (then ``resource-constraint``).
    requests_per_minute: int = 10
    #: Bytes the files' disk keeps free: a slot that would leave less is refused
    #: (``resource-constraint``), whatever the quotas (0: no check).
    min_free_space: int = 1024 * 1024 * 1024
    #: Days a file is kept after its upload; then it is deleted (0: kept for ever).
    expire_days: int = 30
    #: Seconds a slot's PUT URL is valid after the slot is granted (XEP-0363 §7: ~60 s).
    slot_ttl: int = 300
    #: Where browsers reach the files ("https://files.example.org/xmpp": scheme, host,
    #: the HTTP port's public path prefix); the URLs handed out are ``<public_url>/upload/…``.
    #: Empty: ``http.public_url``, else ``http://<http.host or domain>:<http.port>``. A
    #: separate origin (another host name) keeps uploaded files off the forum's origin.
    public_url: str = ""
    #: The files' directory, relative to ``server.data_dir`` (or absolute).
    directory: str = "upload"

    def service_host(self, server_domain: str) -> str:
        return self.host or f"upload.{server_domain}"

    def validate(self) -> None:
        for key in ("max_file_size", "slot_ttl", "requests_per_minute"):
            if getattr(self, key) < 1:
                raise ConfigError.at(key, "must be at least 1")
        for key in ("quota_per_user", "expire_days", "min_free_space"):
            if getattr(self, key) < 0:
                raise ConfigError.at(key, "must not be negative")
        if self.quota_per_user and self.quota_per_user < self.max_file_size:
            raise ConfigError.at("quota_per_user", "must be at least max_file_size (or 0: none)")
        if not self.directory.strip():
            raise ConfigError.at("directory", "must not be empty")
        if self.public_url:
            parts = urlsplit(self.public_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError.at("public_url", "must be http(s)://host[:port][/path]")
            if parts.query or parts.fragment or "@" in parts.netloc:
                raise ConfigError.at("public_url", "no user, query or fragment")
            if self.public_url.endswith("/") or not self.public_url.isprintable():
                raise ConfigError.at("public_url", "no trailing '/' or control characters")
