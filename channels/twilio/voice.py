"""Phone calls through Twilio Voice: a TwiML menu, speech in, voicemail, replies by SMS.

    POST /webhooks/twilio/voice              greeting + menu, in zh-CN or en-US (config/voice.yaml)
    POST /webhooks/twilio/voice/gather       the menu key or the caller's words (speech <Gather>)
    POST /webhooks/twilio/voice/recorded     the end of a voicemail (<Record> action)
    POST /webhooks/twilio/voice/transcription  the voicemail's transcript (or, untranscribed, nothing)

The fraud key publishes a report before the caller hears another word, and can connect the call
to the fraud line; words that take the urgent lane can too. Whatever the caller says becomes a
message only once Kafka has it: a publish that fails answers 503 (set a Voice fallback URL).
Each message's id comes from the CallSid and what was said, so a retried webhook dedupes.
"""

from __future__ import annotations

import hashlib
import re

import structlog
from aiohttp import web
from multidict import MultiDictProxy
from twilio.twiml.voice_response import VoiceResponse

from channels.base import ChannelContext, ChannelParts, OutboundSender, Publish
from channels.twilio.addresses import E164, SID, conversation_key
from channels.twilio.rest import TwilioRest
from channels.twilio.sender import TwilioCallbackSender, TwilioMessageSender
from channels.twilio.status import StatusCallbacks
from channels.twilio.voice_config import Language, VoiceConfig, VoiceConfigFile, load_voice_config
from channels.twilio.webhooks import (
    WebhookVerifier,
    address,
    bad_request,
    field,
    publish_failed,
    twiml,
)
from router.core.envelope import Attachment, Channel, Envelope, Lane, Sender

log = structlog.get_logger("channels.twilio.voice")

VOICE_PATH = "/webhooks/twilio/voice"
GATHER_PATH = "/webhooks/twilio/voice/gather"
RECORDED_PATH = "/webhooks/twilio/voice/recorded"
TRANSCRIPTION_PATH = "/webhooks/twilio/voice/transcription"
DIGITS = re.compile(r"^[0-9*#]{1,10}$")
STEPS = ("menu", "again", "fraud")

check_config = load_voice_config  # what `supportrouter config check` calls


# --- the webhooks ----------------------------------------------------------------------------------


class TwilioVoiceChannel:
    name = "voice"

    def __init__(
        self,
        publish: Publish,
        verifier: WebhookVerifier,
        status: StatusCallbacks,
        config: VoiceConfigFile,
    ):
        self._publish, self.verifier, self._status, self.config = publish, verifier, status, config

    def routes(self, app: web.Application) -> None:
        app.router.add_post(VOICE_PATH, self.answer)
        app.router.add_post(GATHER_PATH, self.gather)
        app.router.add_post(RECORDED_PATH, self.recorded)
        app.router.add_post(TRANSCRIPTION_PATH, self.transcription)
        self._status.routes(app)  # SMS replies to callers report their status there

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    # --- what the caller hears -----------------------------------------------------------------
    # Each request reads voice.yaml's state once and hands it down, so a reload cannot change
    # the menu half-way through an answer.

    @staticmethod
    def _say(config: VoiceConfig, node, lang: Language, text: str) -> None:
        spec = config.languages[lang]
        node.say(text, language=spec.say_language, voice=spec.voice)

    def _listen(
        self,
        config: VoiceConfig,
        response: VoiceResponse,
        lang: Language,
        step: str,
        prompt: str,
        *,
        keys: bool,
    ) -> None:
        spec = config.languages[lang]
        gather = response.gather(
            input="dtmf speech" if keys else "speech",
            num_digits=1 if keys else None,
            action=self.verifier.callback_url(GATHER_PATH, lang=lang, step=step),
            method="POST",
            timeout=config.gather_timeout_seconds,
            speech_timeout="auto",
            language=spec.speech_language,
            action_on_empty_result=True,
        )
        self._say(config, gather, lang, prompt)

    def _dial_fraud_line(
        self, config: VoiceConfig, response: VoiceResponse, lang: Language
    ) -> None:
        texts = config.languages[lang].texts
        self._say(config, response, lang, texts.fraud_connecting)
        response.dial(config.fraud_hotline, timeout=config.fraud_dial_timeout_seconds)
        self._say(config, response, lang, texts.fraud_after_dial)
        response.hangup()

    def _goodbye(
        self, config: VoiceConfig, response: VoiceResponse, lang: Language, text: str
    ) -> VoiceResponse:
        self._say(config, response, lang, text)
        response.hangup()
        return response

    def _voicemail(self, config: VoiceConfig, response: VoiceResponse, lang: Language) -> None:
        spec = config.languages[lang]
        self._say(config, response, lang, spec.texts.voicemail_prompt)
        transcribe = {}
        if spec.transcribe_voicemail:
            transcribe = {
                "transcribe": True,
                "transcribe_callback": self.verifier.callback_url(TRANSCRIPTION_PATH, lang=lang),
            }
        response.record(
            action=self.verifier.callback_url(RECORDED_PATH, lang=lang),
            method="POST",
            max_length=config.voicemail_max_seconds,
            finish_on_key="#",
            play_beep=True,
            trim="trim-silence",
            **transcribe,
        )
        # Reached only if the caller records nothing: Twilio skips the action then.
        self._say(config, response, lang, spec.texts.voicemail_thanks)
        response.hangup()

    # --- handlers ------------------------------------------------------------------------------

    @staticmethod
    def _lang(config: VoiceConfig, request: web.Request, call: _Call) -> Language:
        asked = request.query.get("lang")
        return asked if asked in config.languages else config.language_for(call.caller, call.called)

    async def answer(self, request: web.Request) -> web.Response:
        call = await self._call(request)
        config = await self.config.current()
        lang = self._lang(config, request, call)
        texts = config.languages[lang].texts
        response = VoiceResponse()
        self._listen(config, response, lang, "menu", f"{texts.greeting} {texts.menu}", keys=True)
        log.info("twilio.call_answered", lang=lang, call_sid=call.sid)
        return twiml(response)

    async def gather(self, request: web.Request) -> web.Response:
        call = await self._call(request)
        config = await self.config.current()
        lang = self._lang(config, request, call)
        step = request.query.get("step", "menu")
        if step not in STEPS:
            raise bad_request("voice", "bad_field", f"step must be one of {list(STEPS)}")
        texts = config.languages[lang].texts
        digits = field(call.form, "Digits", "voice", required=False, pattern=DIGITS, max_chars=10)
        speech = field(call.form, "SpeechResult", "voice", required=False, max_chars=4000).strip()
        confidence = _confidence(call.form)
        response = VoiceResponse()

        if step == "menu" and digits == config.fraud_key:
            await self._publish_call(call, f"{call.sid}:key", texts.fraud_report)
            if config.fraud_hotline:
                self._dial_fraud_line(config, response, lang)
            else:
                self._listen(config, response, lang, "fraud", texts.fraud_flagged, keys=False)
                self._goodbye(config, response, lang, texts.thanks)
            return twiml(response)

        if speech and confidence >= config.min_speech_confidence:
            digest = hashlib.sha256(f"{step}\n{speech}".encode()).hexdigest()[:16]
            accepted = await self._publish_call(call, f"{call.sid}:speech:{digest}", speech)
            if accepted.lane is Lane.URGENT and config.fraud_hotline and step != "fraud":
                self._dial_fraud_line(config, response, lang)
                return twiml(response)
            return twiml(self._goodbye(config, response, lang, texts.thanks))

        if step == "fraud":  # the report is in already; details were a bonus
            return twiml(self._goodbye(config, response, lang, texts.thanks))
        if step == "menu" and digits:  # another key: ask in words, once
            self._listen(config, response, lang, "again", texts.reprompt, keys=False)
            return twiml(response)
        self._voicemail(config, response, lang)
        return twiml(response)

    async def recorded(self, request: web.Request) -> web.Response:
        call = await self._call(request)
        config = await self.config.current()
        lang = self._lang(config, request, call)
        spec = config.languages[lang]
        if not spec.transcribe_voicemail:  # no transcript will come: the recording is the message
            recording = _recording(call.form)
            if recording is not None:
                await self._publish_call(
                    call,
                    f"{call.sid}:voicemail:{recording.sid}",
                    spec.texts.voicemail_untranscribed,
                    [recording.attachment],
                )
        return twiml(self._goodbye(config, VoiceResponse(), lang, spec.texts.voicemail_thanks))

    async def transcription(self, request: web.Request) -> web.Response:
        call = await self._call(request)
        config = await self.config.current()
        lang = self._lang(config, request, call)
        recording = _recording(call.form)
        if recording is None:
            raise bad_request(
                "voice", "missing_field", "RecordingSid and RecordingUrl are required"
            )
        text = ""
        if (
            field(call.form, "TranscriptionStatus", "voice", required=False, max_chars=20)
            == "completed"
        ):
            text = field(
                call.form, "TranscriptionText", "voice", required=False, max_chars=10_000
            ).strip()
        text = text or config.languages[lang].texts.voicemail_untranscribed
        await self._publish_call(
            call, f"{call.sid}:voicemail:{recording.sid}", text, [recording.attachment]
        )
        return web.Response(status=204)

    # --- helpers -------------------------------------------------------------------------------

    async def _call(self, request: web.Request) -> _Call:
        form = await self.verifier.form(request, "voice")
        return _Call(
            form=form,
            sid=field(form, "CallSid", "voice", pattern=SID),
            caller=address(form, "From", "voice") if form.get("From") else "anonymous",
            called=address(form, "To", "voice"),
        )

    async def _publish_call(
        self, call: _Call, message_id: str, text: str, attachments: list[Attachment] | None = None
    ) -> Envelope:
        # A caller without a number to text back (withheld, SIP, client) gets a conversation per call.
        customer = call.caller if E164.match(call.caller) else f"{call.caller}-{call.sid}"
        envelope = Envelope.new(
            channel=Channel.VOICE,
            channel_message_id=message_id,
            conversation_key=conversation_key(Channel.VOICE, customer, call.called),
            sender=Sender(address=call.caller),
            text=text,
            thread={"call_sid": call.sid},
            attachments=attachments or [],
        )
        try:
            accepted = await self._publish(envelope)
        except Exception as exc:
            raise publish_failed("voice", exc) from None
        log.info(
            "twilio.call_message_accepted",
            call_sid=call.sid,
            lane=accepted.lane,
            trace_id=accepted.trace_id,
        )
        return accepted


class _Call:
    __slots__ = ("form", "sid", "caller", "called")

    def __init__(self, form: MultiDictProxy[str], sid: str, caller: str, called: str):
        self.form, self.sid, self.caller, self.called = form, sid, caller, called


class _Recording:
    __slots__ = ("sid", "attachment")

    def __init__(self, sid: str, attachment: Attachment):
        self.sid, self.attachment = sid, attachment


def _confidence(form: MultiDictProxy[str]) -> float:
    raw = form.get("Confidence", "")
    if not raw:
        return 1.0  # Twilio leaves it out for keys; speech always carries one
    try:
        value = float(raw)
    except ValueError:
        raise bad_request("voice", "bad_field", "Confidence must be a number from 0 to 1") from None
    if not 0 <= value <= 1:
        raise bad_request("voice", "bad_field", "Confidence must be a number from 0 to 1")
    return value


def _recording(form: MultiDictProxy[str]) -> _Recording | None:
    sid = field(form, "RecordingSid", "voice", required=False, pattern=SID)
    url = field(form, "RecordingUrl", "voice", required=False, max_chars=1000)
    duration = form.get("RecordingDuration", "")
    if not sid or not url or duration == "0":
        return None
    if not url.startswith(("https://", "http://")):
        raise bad_request("voice", "bad_field", "RecordingUrl is not a URL")
    return _Recording(sid, Attachment(name=url, content_type="audio/x-wav", size=0))


def build(context: ChannelContext) -> ChannelParts:
    settings = context.settings.twilio
    config = VoiceConfigFile(context.settings.config_dir)
    verifier = WebhookVerifier.from_settings(settings, context.settings.public_url, "voice")
    adapter = TwilioVoiceChannel(
        context.publish, verifier, StatusCallbacks(verifier, context.store), config
    )
    senders: dict[str, OutboundSender] = {}
    if settings.can_send and settings.voice_reply == "sms":
        senders["voice"] = TwilioMessageSender(
            TwilioRest(settings),
            context.store,
            whatsapp=False,
            fixed_from=settings.voice_sms_from,
            default_from=settings.sms_from,
            messaging_service_sid=settings.messaging_service_sid,
            public_url=context.settings.public_url,
            max_chars=settings.max_message_chars,
        )
    elif settings.can_send and settings.voice_reply == "call":
        senders["voice"] = TwilioCallbackSender(TwilioRest(settings), context.store, config)
    return ChannelParts(adapter=adapter, senders=senders)
