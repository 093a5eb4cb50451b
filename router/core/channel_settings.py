"""The channels' sections of the process settings (router/core/settings.py reads them all).

Each section is plain data with the variable names operators already use: a field is read from
the section's `env_prefix` + its name in capitals, or from its `validation_alias` when it has one
(the providers' own secrets: TWILIO_AUTH_TOKEN, TELEGRAM_BOT_TOKEN). They live here, below the
channels, because the root model in router/core may not import channels; a channel gets its
section from the `ChannelContext.settings` it is built with and never reads the environment.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

TWILIO_API = "https://api.twilio.com"


class Section(BaseModel):
    """A channel's settings: `env_prefix` + FIELD in the environment, or the field's own alias."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    env_prefix: ClassVar[str] = "SUPPORTROUTER_"

    @classmethod
    def env_names(cls) -> dict[str, str]:
        """Each field's variable name, by field name."""
        return {
            name: info.validation_alias
            if isinstance(info.validation_alias, str)
            else f"{cls.env_prefix}{name.upper()}"
            for name, info in cls.model_fields.items()
        }


class TwilioSettings(Section):
    """The Twilio channels' own settings; provider secrets keep Twilio's own variable names."""

    env_prefix: ClassVar[str] = "SUPPORTROUTER_TWILIO_"

    # Twilio's account; with a secret, replies are sent through Twilio's REST API.
    account_sid: str | None = Field(default=None, validation_alias="TWILIO_ACCOUNT_SID")
    # Signs Twilio's webhooks (checked on every request) and, without an API key, REST calls.
    auth_token: SecretStr | None = Field(default=None, validation_alias="TWILIO_AUTH_TOKEN")
    # An API key signs REST calls instead of the auth token; webhooks are still signed with the token.
    api_key: str | None = Field(default=None, validation_alias="TWILIO_API_KEY")
    # The API key's secret.
    api_secret: SecretStr | None = Field(default=None, validation_alias="TWILIO_API_SECRET")
    api_base_url: str = Field(
        default=TWILIO_API, description="where REST calls go: a proxy or a test stand-in"
    )
    insecure_dev: bool = Field(
        default=False,
        description="accept unsigned webhooks when TWILIO_AUTH_TOKEN is unset (development only)",
    )
    sms_from: str | None = Field(default=None, description="fallback sender number for SMS replies")
    whatsapp_from: str | None = Field(
        default=None, description="fallback sender for WhatsApp replies"
    )
    messaging_service_sid: str | None = Field(
        default=None, description="last fallback: a Messaging Service"
    )
    voice_reply: Literal["sms", "call", "outbox"] = Field(
        default="sms",
        description="how a phone conversation is answered: SMS to the caller, a call back, or the sandbox outbox",
    )
    voice_sms_from: str | None = Field(
        default=None, description="sender of SMS replies to callers (default: the number called)"
    )
    # Tries per reply before it is dead-lettered.
    send_attempts: int = Field(default=3, ge=1, le=10)
    # The first wait between tries; it doubles.
    retry_backoff_seconds: float = Field(default=1.0, ge=0)
    # One REST call's limit.
    request_timeout_seconds: float = Field(default=30.0, gt=0)
    max_message_chars: int = Field(
        default=1600, ge=160, le=1600, description="Twilio's limit for one message body"
    )
    # Longer inbound texts are cut, with a note to the agent.
    max_inbound_chars: int = Field(default=10_000, gt=0)

    @property
    def can_send(self) -> bool:
        has_secret = self.auth_token is not None or (self.api_key and self.api_secret is not None)
        return bool(self.account_sid and has_secret)


class TelegramSettings(Section):
    """The bot's own settings; the token and the secret are provider secrets, so unprefixed.

    The secret's shape (what setWebhook accepts) is checked by the channel when it is built, so a
    router without Telegram starts whatever TELEGRAM_SECRET_TOKEN holds.
    """

    env_prefix: ClassVar[str] = "SUPPORTROUTER_TELEGRAM_"

    # The Telegram bot; set, the bot is polled or takes webhooks.
    bot_token: SecretStr | None = Field(default=None, validation_alias="TELEGRAM_BOT_TOKEN")
    # Checked against X-Telegram-Bot-Api-Secret-Token on webhooks.
    secret_token: SecretStr | None = Field(default=None, validation_alias="TELEGRAM_SECRET_TOKEN")
    api_base_url: str = Field(
        default="https://api.telegram.org",
        description="the Bot API server: Telegram's, or a self-hosted telegram-bot-api",
    )
    # getUpdates long-poll time.
    poll_timeout_seconds: int = Field(default=25, ge=0, le=50)
    max_retry_after_seconds: float = Field(
        default=60,
        ge=0,
        description="a longer flood wait is not slept in the sender: the reply is retried, then dead-lettered",
    )

    @field_validator("bot_token", "secret_token", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("api_base_url")
    @classmethod
    def _base_url_shape(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not re.match(r"https?://[^/]+", value):
            raise ValueError("must be an http(s) URL such as https://api.telegram.org")
        return value

    def bot_url(self) -> str:
        return f"{self.api_base_url}/bot"

    def file_url(self) -> str:
        return f"{self.api_base_url}/file/bot"


ADDRESS = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$"
)

# Comma-separated in the environment ("INBOX,Support"), a list in code.
CommaList = list[str]


def _split(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class EmailSettings(Section):
    """SUPPORTROUTER_ + FIELD; the SMTP listener's port is the process-wide smtp_port."""

    env_prefix: ClassVar[str] = "SUPPORTROUTER_"

    # Who we are. Without a support address the listener and the poller stay off: there is
    # no recipient to accept mail for, and no From for replies.
    support_address: str | None = None
    # The display name on replies.
    support_name: str = "Customer Support"
    # Further recipients the listener accepts (aliases such as help@, 客服@).
    email_recipients: CommaList = Field(default_factory=list)
    # A Reply-To on replies (unset: none).
    reply_to: str | None = None

    # SMTP intake (aiosmtpd); the port is Settings.smtp_port.
    smtp_host: str = "127.0.0.1"
    smtp_hostname: str = "supportrouter"  # the name in the greeting; never a DNS lookup
    # Larger mails are refused at DATA (552).
    smtp_max_bytes: int = 10 * 1024 * 1024
    # More recipients in one mail are refused.
    smtp_max_recipients: int = 20
    # An idle SMTP connection is closed after this long.
    smtp_timeout_seconds: float = 60.0

    # Outbound relay (aiosmtplib). Unset host: replies go to the sandbox outbox.
    smtp_relay_host: str | None = None
    # The relay's port.
    smtp_relay_port: int = 587
    # STARTTLS: "auto" upgrades when the relay offers it, "required" refuses to send without it.
    smtp_relay_starttls: Literal["auto", "required", "off"] = "auto"
    smtp_relay_tls: bool = False  # implicit TLS from the first byte (port 465) instead
    # Check the relay's TLS certificate.
    smtp_relay_validate_certs: bool = True
    # Relay login (unset: none).
    smtp_relay_username: str | None = None
    # Relay password.
    smtp_relay_password: SecretStr | None = None
    # One relay conversation's limit.
    smtp_relay_timeout_seconds: float = 30.0

    # IMAP polling (aioimaplib). Unset host: no polling.
    imap_host: str | None = None
    # The IMAP server's port.
    imap_port: int = 993
    # Implicit TLS to the IMAP server.
    imap_tls: bool = True
    # IMAP login.
    imap_username: str | None = None
    # IMAP password.
    imap_password: SecretStr | None = None
    # Mailboxes polled, comma separated.
    imap_mailboxes: CommaList = Field(default_factory=lambda: ["INBOX"])
    imap_poll_seconds: float = 60.0  # between polls when the server offers no IDLE
    imap_idle_seconds: float = 600.0  # re-issue IDLE at least this often (RFC 2177: < 29 min)
    imap_batch: int = 50  # messages handled per round, so one mailbox cannot starve the loop
    # The longest wait between reconnects.
    imap_reconnect_max_seconds: float = 60.0
    # One IMAP command's limit.
    imap_timeout_seconds: float = 30.0

    # Parsing bounds: what one message may cost.
    email_max_text_chars: int = 20_000
    # Quoted history kept per mail.
    email_max_quoted_chars: int = 20_000
    # Attachments kept per mail (more are listed, not kept).
    email_max_attachments: int = 20
    # MIME parts read per mail.
    email_max_parts: int = 200
    # Nesting of multipart parts read per mail.
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
