"""The email channel's settings: SUPPORTROUTER_ environment variables, each with a default.

The SMTP listener's port is the process-wide SUPPORTROUTER_SMTP_PORT (router/core/settings.py);
everything else about email lives here so the channel owns its knobs.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ADDRESS = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$"
)

# Comma-separated in the environment ("INBOX,Support"), a list in code.
CommaList = Annotated[list[str], NoDecode]


def _split(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class EmailSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SUPPORTROUTER_", extra="ignore")

    # Who we are. Without a support address the listener and the poller stay off: there is
    # no recipient to accept mail for, and no From for replies.
    support_address: str | None = None
    support_name: str = "Customer Support"
    # Further recipients the listener accepts (aliases such as help@, 客服@).
    email_recipients: CommaList = Field(default_factory=list)
    reply_to: str | None = None

    # SMTP intake (aiosmtpd); the port is Settings.smtp_port.
    smtp_host: str = "127.0.0.1"
    smtp_hostname: str = "supportrouter"  # the name in the greeting; never a DNS lookup
    smtp_max_bytes: int = 10 * 1024 * 1024
    smtp_max_recipients: int = 20
    smtp_timeout_seconds: float = 60.0

    # Outbound relay (aiosmtplib). Unset host: replies go to the sandbox outbox.
    smtp_relay_host: str | None = None
    smtp_relay_port: int = 587
    # STARTTLS: "auto" upgrades when the relay offers it, "required" refuses to send without it.
    smtp_relay_starttls: Literal["auto", "required", "off"] = "auto"
    smtp_relay_tls: bool = False  # implicit TLS from the first byte (port 465) instead
    smtp_relay_validate_certs: bool = True
    smtp_relay_username: str | None = None
    smtp_relay_password: SecretStr | None = None
    smtp_relay_timeout_seconds: float = 30.0

    # IMAP polling (aioimaplib). Unset host: no polling.
    imap_host: str | None = None
    imap_port: int = 993
    imap_tls: bool = True
    imap_username: str | None = None
    imap_password: SecretStr | None = None
    imap_mailboxes: CommaList = Field(default_factory=lambda: ["INBOX"])
    imap_poll_seconds: float = 60.0  # between polls when the server offers no IDLE
    imap_idle_seconds: float = 600.0  # re-issue IDLE at least this often (RFC 2177: < 29 min)
    imap_batch: int = 50  # messages handled per round, so one mailbox cannot starve the loop
    imap_reconnect_max_seconds: float = 60.0
    imap_timeout_seconds: float = 30.0

    # Parsing bounds: what one message may cost.
    email_max_text_chars: int = 20_000
    email_max_quoted_chars: int = 20_000
    email_max_attachments: int = 20
    email_max_parts: int = 200
    email_max_multiparts: int = 25

    _csv = field_validator("email_recipients", "imap_mailboxes", mode="before")(_split)

    @field_validator("support_address", "reply_to")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None and not ADDRESS.match(value.strip()):
            raise ValueError(f"{value!r} is not an email address")
        return value.strip().lower() if value else value

    @field_validator("email_recipients")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not ADDRESS.match(v)]
        if bad:
            raise ValueError(f"not email addresses: {bad}")
        return [v.lower() for v in value]

    @model_validator(mode="after")
    def _consistent(self) -> EmailSettings:
        if self.smtp_relay_host and not self.support_address:
            raise ValueError(
                "SUPPORTROUTER_SMTP_RELAY_HOST needs SUPPORTROUTER_SUPPORT_ADDRESS (the From of replies)"
            )
        if self.imap_host and not (self.imap_username and self.imap_password):
            raise ValueError(
                "SUPPORTROUTER_IMAP_HOST needs SUPPORTROUTER_IMAP_USERNAME and SUPPORTROUTER_IMAP_PASSWORD"
            )
        if self.smtp_relay_starttls == "required" and self.smtp_relay_tls:
            raise ValueError(
                "SUPPORTROUTER_SMTP_RELAY_TLS (implicit TLS) excludes SUPPORTROUTER_SMTP_RELAY_STARTTLS=required"
            )
        if bool(self.smtp_relay_username) != bool(self.smtp_relay_password):
            raise ValueError("SUPPORTROUTER_SMTP_RELAY_USERNAME and _PASSWORD go together")
        return self

    @property
    def own_addresses(self) -> frozenset[str]:
        """Every address that is us: mail from these is never answered (no loops)."""
        addresses = {a for a in (self.support_address, self.reply_to) if a}
        return frozenset(addresses | set(self.email_recipients))

    @property
    def accepted_recipients(self) -> frozenset[str]:
        return frozenset(a for a in (self.support_address, *self.email_recipients) if a)

    @property
    def message_id_domain(self) -> str:
        return (self.support_address or "supportrouter.invalid").rpartition("@")[2]
