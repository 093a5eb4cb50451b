"""JournalRelay: forgets journal entries the store has, publishes again the ones Kafka lost.

Kafka may have lost an accepted message when the router starts on a journal a crash or a stop
left behind, when the embedded broker was restarted empty, or when a publish was refused (the
customer got a 503, and the message is kept anyway). Those entries are made due at once;
any other entry is published again only if the store still lacks it long after. Publishing
twice is harmless: the dispatcher stores a message once by its message_id.

What is still pending when the router stops stays in the journal for the next start (the wait
for the store on a stop is `router.services.drain`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog

from router.bus.kafka import KafkaBus
from router.core.tasks import cancel_and_wait
from router.observability.metrics import JOURNAL_PENDING, JOURNAL_REPUBLISHED
from router.store.conversations import ConversationStore
from router.store.journal import Entry, IntakeJournal

log = structlog.get_logger("router.services.journal_relay")

_PAGE = 1000
_PAGES_PER_ROUND = 4  # pruned each second at most: a backlog of 20,000 is gone over in 5 s
# Published this many times and still not stored: the pipeline refuses it (the DLQ has it each
# time), so publishing it again would only add dead letters. Forgotten, with an error logged.
MAX_ATTEMPTS = 6


def backoff(attempts: int) -> float:
    """Seconds until an entry published `attempts` times is published again if still missing."""
    return float(min(60 * 2 ** (attempts - 1), 3600))


class JournalRelay:
    def __init__(
        self,
        journal: IntakeJournal,
        store: ConversationStore,
        bus: KafkaBus,
        *,
        interval: float = 1.0,
    ):
        self.journal, self.store, self.bus = journal, store, bus
        self.interval = interval
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._cursor = ""  # where the next round's pruning goes on

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("JournalRelay already started")
        left = await self.prune()
        if left:  # a crash or a stop left them: the broker may not have them any more
            log.warning("journal.replaying", entries=left)
            await self.journal.due_now()
        self._task = asyncio.create_task(self._run(), name="journal:relay")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        await cancel_and_wait(task)
        with contextlib.suppress(Exception):  # the store away: the next start prunes
            left = await self.prune()
            if left:
                log.warning("journal.left_pending", entries=left, next_start_replays=True)

    async def __aenter__(self) -> JournalRelay:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def broker_lost_records(self) -> None:
        """The broker came back empty: every pending entry is due at the next round."""
        asyncio.get_running_loop().create_task(self._all_due())

    async def _all_due(self) -> None:
        await self.journal.due_now()
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                await self.round()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store or the broker away: the next round tries again
                log.warning("journal.round_failed", error=repr(exc)[:300])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()

    async def round(self) -> None:
        await self.prune(_PAGES_PER_ROUND)
        await self.republish_due()

    async def prune(self, pages: int | None = None) -> int:
        """Forget entries the store has; return how many of those looked at are left. With
        `pages`, look at that many pages only, from where the last such call stopped (a round
        costs the same under any backlog; a backlog is gone over in turns); else at all."""
        after = self._cursor if pages is not None else ""
        left = looked = 0
        while pages is None or looked < pages:
            page = await self.journal.ids(_PAGE, after=after)
            looked += 1
            if not page:
                after = ""
                break
            stored = await self.store.stored_message_ids(page)
            await self.journal.done(sorted(stored))
            left += len(page) - len(stored)
            after = page[-1]
        if pages is None:
            JOURNAL_PENDING.set(left)
        else:
            self._cursor = after
            JOURNAL_PENDING.set(await self.journal.count())
        return left

    async def republish_due(self) -> None:
        due = await self.journal.pending(_PAGE, due_before=time.time())
        refused = [e for e in due if e.attempts >= MAX_ATTEMPTS]
        if refused:
            await self.journal.done([e.message_id for e in refused])
            for entry in refused:
                log.error(
                    "journal.gave_up",
                    message_id=entry.message_id,
                    topic=entry.topic,
                    attempts=entry.attempts,
                    see="supportrouter dlq list",
                )
            due = [e for e in due if e.attempts < MAX_ATTEMPTS]
        if not due:
            return
        by_topic: dict[str, list[Entry]] = {}
        for entry in due:
            by_topic.setdefault(entry.topic, []).append(entry)
        for topic, entries in by_topic.items():
            await self.bus.publish_many(topic, [(e.key, e.value) for e in entries])
            await self.journal.retry_later([e.message_id for e in entries], backoff)
            JOURNAL_REPUBLISHED.inc(len(entries))
            log.info("journal.republished", topic=topic, entries=len(entries))
