"""Twilio's addresses: phone numbers, resource SIDs, and the conversation key built from them."""

from __future__ import annotations

import re

from router.core.envelope import Channel

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
# Twilio SIDs: two letters naming the resource, then 32 hex digits.
SID = re.compile(r"^[A-Z]{2}[0-9a-fA-F]{32}$")
MAX_ADDRESS_CHARS = 64

# A Twilio conversation is one customer address talking to one of our numbers on one channel. The
# key carries our number, so a reply leaves from the number the customer wrote to or called.


def conversation_key(channel: Channel, customer: str, ours: str) -> str:
    return f"{channel.value}|{customer}|{ours}"


def parse_conversation_key(key: str) -> tuple[str, str, str] | None:
    parts = key.split("|")
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 and all(parts) else None
