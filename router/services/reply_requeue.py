"""ReplyRequeue: the replies an embedded broker lost when it came back empty go out again.

A reply is stored unpublished, published, and marked published once Kafka acknowledged it
(OutboundRelay). When the embedded broker starts empty, every reply marked published but not
sent yet is made unpublished again (`requeue_unsent`), and the relays publish it to the new one.

One reply can slip between the two: a dispatcher had it acknowledged by the broker that then
died, and marked it published only after `requeue_unsent` had passed it by (it was still
unpublished then). So the replies unpublished at the restart are watched, and each one marked
published since and not sent yet is put back too. One that went to the new broker is then
published twice: the sender dedupes by message_id.
"""

from __future__ import annotations

import asyncio

import structlog

from router.core.tasks import cancel_and_wait
from router.store.conversations import ConversationStore

log = structlog.get_logger("router.app")  # its lines keep their logger


class ReplyRequeue:
    def __init__(
        self, store: ConversationStore, *, poll_seconds: float = 1.0, watch_seconds: float = 120.0
    ):
        self.store = store
        self.poll_seconds, self.watch_seconds = poll_seconds, watch_seconds
        self._watches: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        pass

    async def started_empty(self) -> None:
        """The router started its embedded broker, new: what a crash left published and unsent
        goes out again (nobody is publishing yet, so there is nothing to watch)."""
        await self._requeue_unsent()

    async def stop(self) -> None:
        await cancel_and_wait(*self._watches)

    async def broker_restarted(self) -> None:
        """The embedded broker died and came back empty."""
        unpublished = await self.store.unpublished_ids()
        await self._requeue_unsent()
        if unpublished:
            watch = asyncio.create_task(self._watch(unpublished), name="replies:watch")
            self._watches.add(watch)
            watch.add_done_callback(self._watches.discard)

    async def _requeue_unsent(self) -> None:
        requeued = await self.store.requeue_unsent()
        if requeued:
            log.warning(
                "replies.requeued", replies=requeued, reason="embedded broker started empty"
            )

    async def _watch(self, message_ids: list[str]) -> None:
        """Until each of these is marked published (or the watch's time is up; one still
        unpublished then is for the relays, which publish it to the new broker)."""
        left, deadline = message_ids, asyncio.get_running_loop().time() + self.watch_seconds
        while left and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(self.poll_seconds)
            try:
                left, requeued = await self.store.requeue_published(left)
            except Exception as exc:  # the store is away: ask again at the next look
                log.warning("replies.watch_failed", error=repr(exc)[:300])
                continue
            if requeued:
                log.warning(
                    "replies.requeued",
                    replies=requeued,
                    reason="marked published after the embedded broker restarted",
                )
