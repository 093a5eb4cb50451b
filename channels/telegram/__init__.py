"""Telegram: the bot's webhook or long polling, and its sender."""
