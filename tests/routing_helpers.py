"""Helpers for the routing, SLA and assignment tests: classified envelopes, rules from a config
directory without training the classifier, and a conversation placed the way the dispatcher
places it."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path
from typing import Any

from router.core.envelope import Channel, Classification, Envelope, Sender, Urgency
from router.operator_files.config import RouterConfig, load_config
from router.routing.workflow import Workflow, facts_for
from router.services.sla import calendar_for, placement
from router.store.conversations import ConversationStore
from tests.conftest import CONFIG_DIR

_ids = itertools.count()


class StaticRules:
    """What the assigner and the SLA monitor read: the config in force (no classifier needed)."""

    def __init__(self, config: RouterConfig):
        self.config = config

    @property
    def version(self) -> str:
        return self.config.version


def config_dir_with(tmp_path: Path, **files: str) -> Path:
    """A copy of the shipped config/ with some files replaced: {"agents.yaml": "..."}."""
    target = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, target)
    for name, text in files.items():
        (target / name.replace("__", "/")).write_text(text)
    return target


def rules_from(directory: Path) -> StaticRules:
    return StaticRules(load_config(directory))


def classified(
    category: str,
    urgency: str,
    *,
    confidence: float = 0.95,
    channel: str = "chat",
    language: str = "en",
    text: str = "…",
    key: str | None = None,
    redactions: list[str] | None = None,
    entities: dict | None = None,
) -> Envelope:
    n = next(_ids)
    envelope = Envelope.new(
        channel=Channel(channel),
        channel_message_id=f"m{n}",
        conversation_key=key or f"k{n}",
        sender=Sender(address=key or f"+86138000{n:05d}"),
        text=text,
        redactions=redactions or [],
    )
    return envelope.model_copy(
        update={
            "classification": Classification(
                category=category,
                urgency=Urgency(urgency),
                confidence=confidence,
                language=language,
                entities=entities or {},
            )
        }
    )


async def place(
    store: ConversationStore,
    config: RouterConfig,
    clock,
    envelope: Envelope,
    customer: dict | None = None,
    available=None,
) -> dict[str, Any]:
    """Store a message as the dispatcher does: decided by the workflow, timers started now."""
    at = clock.now()
    decision = Workflow(config).decide(
        facts_for(envelope, config, customer),
        available=available,
        is_open=lambda q: calendar_for(config, q).is_open(at),
    )
    recorded = await store.record_inbound(
        envelope.model_copy(update={"received_at": at}),
        decision.queue,
        lambda *_: None,
        placement=placement(config, decision, at),
        decision=decision.as_dict(),
    )
    return recorded.conversation
