"""The Telegram channel's settings: the bot's token and webhook secret, the Bot API server."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from router.operator_files.config import ConfigError, Problem


class TelegramSettings(BaseSettings):
    """The bot's own settings; the token and the secret are provider secrets, so unprefixed."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    bot_token: SecretStr | None = Field(default=None, validation_alias="TELEGRAM_BOT_TOKEN")
    secret_token: SecretStr | None = Field(default=None, validation_alias="TELEGRAM_SECRET_TOKEN")
    api_base_url: str = Field(
        default="https://api.telegram.org",
        validation_alias="SUPPORTROUTER_TELEGRAM_API_BASE_URL",
        description="the Bot API server: Telegram's, or a self-hosted telegram-bot-api",
    )
    poll_timeout_seconds: int = Field(
        default=25, ge=0, le=50, validation_alias="SUPPORTROUTER_TELEGRAM_POLL_TIMEOUT_SECONDS"
    )
    max_retry_after_seconds: float = Field(
        default=60,
        ge=0,
        validation_alias="SUPPORTROUTER_TELEGRAM_MAX_RETRY_AFTER_SECONDS",
        description="a longer flood wait is not slept in the sender: the reply is retried, then dead-lettered",
    )

    @field_validator("bot_token", "secret_token", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("secret_token")
    @classmethod
    def _secret_shape(cls, value: SecretStr | None) -> SecretStr | None:
        # What setWebhook accepts; anything else Telegram refuses at start.
        if value is not None and not re.fullmatch(
            r"[A-Za-z0-9_-]{1,256}", value.get_secret_value()
        ):
            raise ValueError("must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
        return value

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


def load_settings() -> TelegramSettings:
    try:
        return TelegramSettings()
    except ValidationError as exc:
        raise ConfigError(
            [
                Problem("environment", None, f"{'.'.join(map(str, e['loc']))}: {e['msg']}")
                for e in exc.errors()
            ]
        ) from None
