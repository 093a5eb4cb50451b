"""Replies through Twilio: as messages (SMS or WhatsApp) split to Twilio's length and sent part by
part, or to a caller as a call back that reads the reply out."""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime, timedelta
from urllib.parse import urlencode

import structlog
from twilio.twiml.voice_response import VoiceResponse

from channels.base import DeliveryFailed
from channels.base.text_split import SENTENCE_BREAKS, split_units
from channels.twilio.addresses import E164, parse_conversation_key
from channels.twilio.rest import TwilioRest
from channels.twilio.status import STATUS_PATH
from channels.twilio.voice_config import VoiceConfigFile, is_language
from router.classify.textprep import detect_language
from router.core.envelope import Outbound

log = structlog.get_logger("channels.twilio")


def split_message(text: str, limit: int = 1600) -> list[str]:
    """Split a reply into messages of at most `limit` units, at the best break in each, numbered."""
    return split_units(
        text, limit, breaks=SENTENCE_BREAKS, keep_breaks=True, strip=True, numbered=True
    )


# A lookup after a crash looks at the messages Twilio sent since the send began, allowing for
# this much difference between our clock and Twilio's (its dates have whole seconds), and at
# most this many of them: the newest, which a crashed send's parts are among.
LOOKUP_CLOCK_SKEW = timedelta(seconds=5)
LOOKUP_LIMIT = 100


class TwilioMessageSender:
    """Delivers replies as Twilio messages (SMS or WhatsApp), from the number the customer used.

    Parts of a split reply already sent are remembered for a while, so a retry after a failure
    half-way sends only what is missing (within this process; a restart may repeat parts).
    """

    remembered = 1000

    def __init__(
        self,
        rest: TwilioRest,
        store,
        *,
        whatsapp: bool,
        fixed_from: str | None = None,
        default_from: str | None = None,
        messaging_service_sid: str | None = None,
        public_url: str | None = None,
        max_chars: int = 1600,
    ):
        self.rest, self.store, self.whatsapp = rest, store, whatsapp
        self.fixed_from, self.default_from = fixed_from, default_from
        self.messaging_service_sid = messaging_service_sid
        self.public_url = public_url.rstrip("/") if public_url else None
        self.max_chars = max_chars
        self._progress: OrderedDict[str, dict[int, str]] = OrderedDict()

    async def start(self) -> None:
        await self.rest.start()

    async def stop(self) -> None:
        await self.rest.stop()

    def _to(self, out: Outbound) -> str:
        number = out.to.removeprefix("whatsapp:")
        if not E164.match(number):
            raise DeliveryFailed(
                f"cannot message {out.to!r}: not a phone number (a withheld caller id?)"
            )
        return f"whatsapp:{number}" if self.whatsapp else number

    def _sender(self, out: Outbound) -> dict[str, str]:
        parsed = parse_conversation_key(out.conversation_key)
        ours = self.fixed_from or (parsed[2] if parsed else None) or self.default_from
        if ours:
            number = ours.removeprefix("whatsapp:")
            if E164.match(number):
                return {"from_": f"whatsapp:{number}" if self.whatsapp else number}
        if self.messaging_service_sid:
            return {"messaging_service_sid": self.messaging_service_sid}
        raise DeliveryFailed(f"no number to send from for conversation {out.conversation_id}")

    async def lookup(self, out: Outbound, since: datetime) -> str | None:
        """After a send cut short (a crash during it): the sid of the reply's last part when
        Twilio already has every part, sent to the customer since `since` with the same body;
        else None. Parts found are remembered, so send() then sends only the others."""
        parts = split_message(out.text, self.max_chars)
        found = await self.rest.list_messages(
            to=self._to(out), date_sent_after=since - LOOKUP_CLOCK_SKEW, limit=LOOKUP_LIMIT
        )
        after = since - LOOKUP_CLOCK_SKEW
        sids: dict[str, list[str]] = {}
        for message in reversed(found):  # Twilio lists the newest first
            sent_at = message.date_sent
            if sent_at is not None and sent_at < after:
                continue  # DateSent> may be applied to the day only
            if message.direction != "inbound" and message.body is not None:
                sids.setdefault(message.body, []).append(message.sid)
        done = self._progress.setdefault(out.message_id, {})
        self._progress.move_to_end(out.message_id)
        for i, body in enumerate(parts):
            if i not in done and sids.get(body):
                done[i] = sids[body].pop(0)
        if len(done) < len(parts):
            return None
        self._progress.pop(out.message_id, None)
        return done[len(parts) - 1]

    async def send(self, out: Outbound) -> None:
        to, sender = self._to(out), self._sender(out)
        parts = split_message(out.text, self.max_chars)
        done = self._progress.setdefault(out.message_id, {})
        self._progress.move_to_end(out.message_id)
        while len(self._progress) > self.remembered:
            self._progress.popitem(last=False)
        callback = {}
        if self.public_url:
            callback["status_callback"] = (
                f"{self.public_url}{STATUS_PATH}?{urlencode({'message_id': out.message_id})}"
            )
        for i, body in enumerate(parts):
            if i not in done:
                done[i] = await self.rest.create_message(to=to, body=body, **sender, **callback)
        self._progress.pop(out.message_id, None)
        # The last part's sid stands for the reply: "delivered" means the whole of it arrived.
        await self.store.set_delivery_status(
            out.message_id, "sent", provider_message_id=done[len(parts) - 1]
        )
        log.info("twilio.sent", channel=out.channel, parts=len(parts), trace_id=out.trace_id)


class TwilioCallbackSender:
    """Answers a caller by calling back and reading the reply out (SUPPORTROUTER_TWILIO_VOICE_REPLY=call)."""

    def __init__(self, rest: TwilioRest, store, config: VoiceConfigFile):
        self.rest, self.store, self.config = rest, store, config

    async def start(self) -> None:
        await self.rest.start()

    async def stop(self) -> None:
        await self.rest.stop()

    async def send(self, out: Outbound) -> None:
        if not E164.match(out.to):
            raise DeliveryFailed(
                f"cannot call {out.to!r} back: not a phone number (a withheld caller id?)"
            )
        parsed = parse_conversation_key(out.conversation_key)
        if parsed is None or not E164.match(parsed[2]):
            raise DeliveryFailed(f"no number to call from for conversation {out.conversation_id}")
        config = await self.config.current()
        detected = detect_language(out.text)
        spec = (
            config.languages.get(detected) if is_language(detected) else None
        ) or config.languages[config.default_language]
        response = VoiceResponse()
        response.say(out.text, language=spec.say_language, voice=spec.voice, loop=2)
        sid = await self.rest.create_call(to=out.to, from_=parsed[2], twiml=str(response))
        await self.store.set_delivery_status(out.message_id, "sent", provider_message_id=sid)
        log.info("twilio.called_back", trace_id=out.trace_id)
