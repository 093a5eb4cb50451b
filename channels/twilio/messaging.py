"""SMS and WhatsApp through Twilio Messaging: one webhook in, twilio's REST client out.

POST /webhooks/twilio/messaging takes both: a `whatsapp:` address is a WhatsApp message and its
conversation stays on WhatsApp. The record reaches Kafka before Twilio gets its (empty) TwiML, so
a 503 makes Twilio retry, and the retry dedupes on MessageSid.

"sms" and "whatsapp" are registered separately so a router can run either; both share the one
webhook route, added by whichever is built first, which hands each message to the channel its
address names.
"""

from __future__ import annotations

from aiohttp import web
from multidict import MultiDictProxy
from twilio.twiml.messaging_response import MessagingResponse

from channels.base import ChannelContext, ChannelParts, OutboundSender, Publish
from channels.twilio.addresses import SID, conversation_key
from channels.twilio.rest import TwilioRest
from channels.twilio.sender import TwilioMessageSender
from channels.twilio.status import StatusCallbacks
from channels.twilio.webhooks import (
    WebhookVerifier,
    add_route_once,
    address,
    bad_request,
    field,
    publish_failed,
    twiml,
)
from router.core.envelope import Attachment, Channel, Envelope, Sender
from router.core.http import json_error
from router.observability.access_log import logged_as_message

# The answer to every accepted message: the same empty TwiML, rendered once (ElementTree per
# request was about 5% of the gateway's time).
_NOTHING_TO_SAY = str(MessagingResponse())

MESSAGING_PATH = "/webhooks/twilio/messaging"
MESSAGING_ROUTE = web.AppKey("twilio_messaging_route", str)
MESSAGING_CHANNELS = web.AppKey("twilio_messaging_channels", dict)
MAX_MEDIA = 10  # Twilio delivers at most ten media items with one message


class TwilioMessagingChannel:
    """One Twilio messaging channel (sms or whatsapp) behind the shared messaging webhook."""

    def __init__(
        self,
        channel: Channel,
        publish: Publish,
        verifier: WebhookVerifier,
        status: StatusCallbacks,
        max_text_chars: int = 10_000,
    ):
        self.channel, self.name = channel, channel.value
        self._publish, self.verifier, self._status = publish, verifier, status
        self._max_text = max_text_chars

    def routes(self, app: web.Application) -> None:
        if MESSAGING_CHANNELS not in app:
            app[MESSAGING_CHANNELS] = {}
        app[MESSAGING_CHANNELS][self.channel] = self
        add_route_once(app, MESSAGING_ROUTE, MESSAGING_PATH, _receive)
        self._status.routes(app)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def accept(self, form: MultiDictProxy[str]) -> web.Response:
        label = self.name
        sid = field(form, "MessageSid", label, pattern=SID)
        sender, ours = address(form, "From", label), address(form, "To", label)
        text = field(form, "Body", label, required=False, max_chars=self._max_text).strip()
        envelope = Envelope.new(
            channel=self.channel,
            channel_message_id=sid,
            conversation_key=conversation_key(self.channel, sender, ours),
            sender=Sender(
                address=sender,
                name=field(form, "ProfileName", label, required=False, max_chars=200) or None,
            ),
            text=text or _location(form, label),
            attachments=_media(form, label),
        )
        try:
            await self._publish(envelope)  # logged there, as `message.received`
        except Exception as exc:
            raise publish_failed(label, exc) from None
        return twiml(_NOTHING_TO_SAY)


def _media(form: MultiDictProxy[str], channel: str) -> list[Attachment]:
    """MMS and WhatsApp media as metadata: Twilio's media URL (fetched with the account's
    credentials) and type; Twilio gives no size, so size is 0."""
    raw = form.get("NumMedia", "0") or "0"
    if not raw.isdigit() or int(raw) > MAX_MEDIA:
        raise bad_request(channel, "bad_field", f"NumMedia must be a number from 0 to {MAX_MEDIA}")
    attachments = []
    for i in range(int(raw)):
        url = field(form, f"MediaUrl{i}", channel, max_chars=1000)
        if not url.startswith(("https://", "http://")):
            raise bad_request(channel, "bad_field", f"MediaUrl{i} is not a URL")
        kind = field(form, f"MediaContentType{i}", channel, required=False, max_chars=100)
        attachments.append(
            Attachment(name=url, content_type=kind or "application/octet-stream", size=0)
        )
    return attachments


def _location(form: MultiDictProxy[str], channel: str) -> str:
    """A WhatsApp location pin has no body: say where it is, so an agent sees something."""
    lat = field(form, "Latitude", channel, required=False, max_chars=30)
    lon = field(form, "Longitude", channel, required=False, max_chars=30)
    if not (lat and lon):
        return ""
    label = field(form, "Address", channel, required=False, max_chars=300) or field(
        form, "Label", channel, required=False, max_chars=300
    )
    return f"[location {lat},{lon}{' ' + label if label else ''}]"


async def _receive(request: web.Request) -> web.Response:
    channels: dict[Channel, TwilioMessagingChannel] = request.app[MESSAGING_CHANNELS]
    any_channel = next(iter(channels.values()))
    form = await any_channel.verifier.form(request, "twilio_messaging")
    sender = field(form, "From", "twilio_messaging", max_chars=64)
    channel = Channel.WHATSAPP if sender.startswith("whatsapp:") else Channel.SMS
    if ":" in sender and channel is not Channel.WHATSAPP:
        raise bad_request(
            "twilio_messaging", "unsupported", f"unsupported address type {sender.split(':')[0]!r}"
        )
    target = channels.get(channel)
    if target is None:
        raise json_error(
            web.HTTPForbidden, f"channel {channel.value} is not enabled on this router"
        )
    answer = await target.accept(form)
    logged_as_message(request)  # as `message.received`: no access line besides
    return answer


def _build(context: ChannelContext, channel: Channel) -> ChannelParts:
    settings = context.settings.twilio
    public_url = context.settings.public_url
    verifier = WebhookVerifier.from_settings(settings, public_url, channel.value)
    adapter = TwilioMessagingChannel(
        channel,
        context.publish,
        verifier,
        StatusCallbacks(verifier, context.store),
        settings.max_inbound_chars,
    )
    senders: dict[str, OutboundSender] = {}
    if settings.can_send:
        is_whatsapp = channel is Channel.WHATSAPP
        senders[channel.value] = TwilioMessageSender(
            TwilioRest(settings),
            context.store,
            whatsapp=is_whatsapp,
            default_from=settings.whatsapp_from if is_whatsapp else settings.sms_from,
            messaging_service_sid=settings.messaging_service_sid,
            public_url=public_url,
            max_chars=settings.max_message_chars,
        )
    return ChannelParts(adapter=adapter, senders=senders)


def build_sms(context: ChannelContext) -> ChannelParts:
    return _build(context, Channel.SMS)


def build_whatsapp(context: ChannelContext) -> ChannelParts:
    return _build(context, Channel.WHATSAPP)
