"""Telegram: the channel's wiring. The bot's Application feeds the gateway (inbound.py: webhook or
long polling, handlers.py: updates into envelopes), and a Bot sends the replies (sender.py);
its settings are the `telegram` section of the process settings (router/core/channel_settings.py)."""

from __future__ import annotations

import re

import structlog
from telegram import Bot
from telegram.ext import Application, ApplicationBuilder

from channels.base import ChannelContext, ChannelParts
from channels.telegram.inbound import WEBHOOK_PATH, TelegramChannel
from channels.telegram.sender import TelegramSender
from router.core.channel_settings import TelegramSettings
from router.operator_files.config import ConfigError, Problem

log = structlog.get_logger("channels.telegram.adapter")


def build_application(cfg: TelegramSettings) -> Application:
    assert cfg.bot_token is not None
    return (
        ApplicationBuilder()
        .token(cfg.bot_token.get_secret_value())
        .base_url(cfg.bot_url())
        .base_file_url(cfg.file_url())
        .updater(None)  # we fetch or receive updates ourselves, inside the router's loop
        .build()
    )


def _refused(reason: str) -> ConfigError:
    return ConfigError([Problem("environment", None, reason)])


def build(context: ChannelContext) -> ChannelParts:
    cfg = context.settings.telegram
    if cfg.bot_token is None:
        log.info("telegram.off", reason="TELEGRAM_BOT_TOKEN is not set")
        return ChannelParts()
    public_url = context.settings.public_url
    webhook_url = f"{public_url.rstrip('/')}{WEBHOOK_PATH}" if public_url else None
    secret = cfg.secret_token.get_secret_value() if cfg.secret_token else None
    # What setWebhook accepts; anything else Telegram refuses at start.
    if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
        raise _refused("TELEGRAM_SECRET_TOKEN: must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
    if webhook_url and secret is None:
        raise _refused(
            "TELEGRAM_SECRET_TOKEN is required when SUPPORTROUTER_PUBLIC_URL is set "
            "(the Telegram webhook is checked against it)"
        )
    adapter = TelegramChannel(
        build_application(cfg),
        context.publish,
        context.store,
        webhook_url=webhook_url,
        secret_token=secret,
        poll_timeout=cfg.poll_timeout_seconds,
    )
    bot = Bot(
        cfg.bot_token.get_secret_value(), base_url=cfg.bot_url(), base_file_url=cfg.file_url()
    )
    sender = TelegramSender(bot, context.store, max_retry_after=cfg.max_retry_after_seconds)
    return ChannelParts(adapter=adapter, senders={"telegram": sender})
