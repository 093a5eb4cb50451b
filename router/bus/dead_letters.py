"""The dead-letter queue as operators see it: read every entry, show one, replay some.

`KafkaBus.dead_letter` writes one JSON record per failure to the DLQ topic: {stage, error,
topic, partition, offset, key, value, at}, where value is the original JSON or {"base64": ...}
when it did not parse. Here the topic is read from the beginning outside any consumer group
(nothing is committed, so reading never hides an entry from anyone), and an entry is named by
where it sits in the DLQ: `<partition>-<offset>`, which never changes.

Replay publishes the original value and key back to the original topic. It is safe to repeat:
the consumers are idempotent by message_id, so a record that was already handled changes
nothing. An entry stays in the DLQ after its replay (Kafka logs are append-only); a replay that
fails again is dead-lettered again, as a new entry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import structlog
from aiokafka import ConsumerRecord

from router.bus.kafka import KafkaBus
from router.bus.reader import read_to_end

log = structlog.get_logger("router.bus.dead_letters")

READ_TIMEOUT_SECONDS = 30.0


class DeadLetterError(Exception):
    """An entry that cannot be shown or replayed: the message says which and why."""


class UnknownDeadLetter(DeadLetterError):
    pass


class NotReplayable(DeadLetterError):
    pass


@dataclass(frozen=True)
class DeadLetter:
    id: str  # `<partition>-<offset>` of the DLQ record itself
    stage: str | None
    error: str
    topic: str | None  # where the original record was, and where a replay sends it
    partition: int | None
    offset: int | None
    key: str | None
    value: Any
    at: str | None
    kafka_key: bytes | None  # the DLQ record's own key: the original key, byte for byte

    @classmethod
    def from_record(cls, record: ConsumerRecord) -> DeadLetter:
        entry_id = f"{record.partition}-{record.offset}"
        try:
            body = json.loads(record.value or b"")
        except (ValueError, TypeError):
            body = None
        if not isinstance(body, dict):
            # Not written by KafkaBus.dead_letter; listed all the same, so nothing is hidden.
            body = {"error": "not a dead-letter entry"}
        return cls(
            id=entry_id,
            stage=body.get("stage"),
            error=str(body.get("error", "")),
            topic=body.get("topic"),
            partition=body.get("partition"),
            offset=body.get("offset"),
            key=body.get("key"),
            value=body.get("value"),
            at=body.get("at"),
            kafka_key=record.key,
        )

    @property
    def refusal(self) -> str | None:
        """Why this entry cannot be replayed, or None when it can."""
        if not self.topic:
            return f"dead letter {self.id} names no topic to replay to"
        if isinstance(self.value, dict) and set(self.value) == {"base64"}:
            # Replaying bytes that did not parse would only dead-letter them again.
            return f"dead letter {self.id} did not parse as JSON; replaying it would fail again"
        if self.value is None:
            return f"dead letter {self.id} holds no value"
        return None

    def replay_key(self) -> bytes | None:
        if self.kafka_key is not None:
            return self.kafka_key
        return self.key.encode() if self.key is not None else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "stage": self.stage,
            "error": self.error,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "key": self.key,
            "value": self.value,
            "at": self.at,
            "replayable": self.refusal is None,
        }


@dataclass
class ReplayResult:
    replayed: list[DeadLetter]
    skipped: list[tuple[DeadLetter, str]]  # with --all: entries that cannot be replayed, and why


class DeadLetters:
    """The DLQ topic of a bus. Reading needs only the bootstrap servers; replaying needs the
    bus started (its acks=all producer)."""

    def __init__(self, bus: KafkaBus):
        self.bus = bus
        self.topic = bus.topics.dlq

    async def entries(self, stage: str | None = None) -> list[DeadLetter]:
        """Every entry in the DLQ now, oldest first; only those of `stage` when given."""
        records = await self._read_all()
        found = [DeadLetter.from_record(r) for r in records]
        if stage is not None:
            found = [e for e in found if e.stage == stage]
        return sorted(found, key=lambda e: (e.at or "", e.id))

    async def entry(self, entry_id: str) -> DeadLetter:
        for e in await self.entries():
            if e.id == entry_id:
                return e
        raise UnknownDeadLetter(f"no dead letter {entry_id} in {self.topic}")

    async def replay(
        self, ids: list[str] | None = None, *, stage: str | None = None, by: str | None = None
    ) -> ReplayResult:
        """`select`, then publish what it chose. `by` names who asked, for the log."""
        result = await self.select(ids, stage=stage)
        await self.publish(result.replayed, by)
        return result

    async def select(
        self, ids: list[str] | None = None, *, stage: str | None = None
    ) -> ReplayResult:
        """What a replay would publish: the entries named by `ids` (all or nothing: an unknown or
        unreplayable id is refused before anything is published), or, without ids, every
        replayable entry (of `stage`, when given), the others skipped with the reason."""
        entries = await self.entries(stage)
        if ids is None:
            chosen = [e for e in entries if e.refusal is None]
            skipped = [(e, why) for e in entries if (why := e.refusal) is not None]
            return ReplayResult(chosen, skipped)
        by_id = {e.id: e for e in entries}
        unknown = [i for i in ids if i not in by_id]
        if unknown:
            raise UnknownDeadLetter(f"no dead letter {', '.join(unknown)} in {self.topic}")
        chosen = [by_id[i] for i in dict.fromkeys(ids)]
        refusals = [why for e in chosen if (why := e.refusal) is not None]
        if refusals:
            raise NotReplayable("; ".join(refusals))
        return ReplayResult(chosen, [])

    async def publish(self, entries: list[DeadLetter], by: str | None = None) -> None:
        """Each entry's original value and key to its original topic (acks=all), one by one."""
        for e in entries:
            await self._publish(e, by)

    async def _publish(self, entry: DeadLetter, by: str | None) -> None:
        assert entry.topic is not None  # `refusal` checked it
        value = json.dumps(entry.value, ensure_ascii=False).encode()
        await self.bus.publish(entry.topic, value, key=entry.replay_key())
        log.info(
            "dlq.replayed",
            id=entry.id,
            stage=entry.stage,
            topic=entry.topic,
            key=entry.key,
            original_offset=entry.offset,
            by=by,
        )

    async def _read_all(self) -> list[ConsumerRecord]:
        return await read_to_end(self.bus.bootstrap_servers, [self.topic], READ_TIMEOUT_SECONDS)
