"""Phone calls: TwiML menus in zh-CN and en-US, the fraud key, speech and voicemail as messages,
replies to callers. Webhooks are signed with twilio's RequestValidator and sent over real HTTP;
TwiML is parsed with xml.etree, never compared as a string."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from structlog.testing import capture_logs

from channels.twilio.voice_config import load_voice_config
from router.core.envelope import Lane, Urgency
from router.operator_files.config import ConfigError
from tests.conftest import CONFIG_DIR
from tests.twilio_standin import CUSTOMER, OUR_NUMBER, PUBLIC_URL, call_sid, twilio_router

US_CALLER = "+12025550143"
HOTLINE = "+15005550199"
STOLEN = "someone stole money from my wallet"
VOICE = "/webhooks/twilio/voice"
GATHER = "/webhooks/twilio/voice/gather"
RECORDING_URL = "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE" + "c" * 32


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/store.db"


@pytest.fixture
def voice_texts() -> dict:
    return yaml.safe_load((CONFIG_DIR / "voice.yaml").read_text(encoding="utf-8"))["languages"]


def config_with(tmp_path: Path, **voice) -> Path:
    """A copy of config/ whose voice.yaml has these top-level keys changed."""
    target = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, target)
    data = yaml.safe_load((target / "voice.yaml").read_text(encoding="utf-8"))
    data.update(voice)
    (target / "voice.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return target


def parse(body: str) -> ET.Element:
    root = ET.fromstring(body)
    assert root.tag == "Response"
    return root


def verbs(root: ET.Element) -> list[str]:
    return [child.tag for child in root]


def action(element: ET.Element) -> tuple[str, dict[str, list[str]]]:
    parts = urlsplit(element.get("action"))
    return f"{parts.scheme}://{parts.netloc}{parts.path}", parse_qs(parts.query)


# --- the greeting and menu -------------------------------------------------------------------------


async def test_a_caller_from_china_is_greeted_in_chinese_with_the_menu_inside_a_speech_and_key_gather(
    sqlite_url, monkeypatch, voice_texts
):
    async with twilio_router(sqlite_url, monkeypatch) as t:
        status, body = await t.call(VOICE, call_sid(), caller=CUSTOMER)
        assert status == 200
        root = parse(body)
        assert verbs(root) == ["Gather"]
        gather = root.find("Gather")
        assert gather.get("input") == "dtmf speech" and gather.get("numDigits") == "1"
        assert gather.get("language") == "zh-CN" and gather.get("actionOnEmptyResult") == "true"
        assert action(gather) == (PUBLIC_URL + GATHER, {"lang": ["zh"], "step": ["menu"]})
        say = gather.find("Say")
        assert say.get("language") == "zh-CN"
        texts = voice_texts["zh"]["texts"]
        assert texts["greeting"] in say.text and texts["menu"] in say.text
        assert await t.inbound_records() == []  # answering a call is not a message


async def test_a_caller_from_the_us_is_greeted_in_english(sqlite_url, monkeypatch, voice_texts):
    async with twilio_router(sqlite_url, monkeypatch) as t:
        root = parse((await t.call(VOICE, call_sid(), caller=US_CALLER))[1])
        gather = root.find("Gather")
        assert gather.get("language") == "en-US"
        assert voice_texts["en"]["texts"]["greeting"] in gather.find("Say").text


async def test_the_number_called_can_choose_the_language_over_the_callers_prefix(
    sqlite_url, monkeypatch, tmp_path
):
    config = config_with(tmp_path, language_by_called_number={OUR_NUMBER: "zh"})
    async with twilio_router(sqlite_url, monkeypatch, config_dir=config) as t:
        root = parse((await t.call(VOICE, call_sid(), caller=US_CALLER))[1])
        assert root.find("Gather").get("language") == "zh-CN"


# --- the fraud key ---------------------------------------------------------------------------------


async def test_the_fraud_key_reaches_the_urgent_lane_before_the_answer_and_dials_the_fraud_line(
    sqlite_url, monkeypatch, tmp_path
):
    async with twilio_router(
        sqlite_url, monkeypatch, config_dir=config_with(tmp_path, fraud_hotline=HOTLINE)
    ) as t:
        sid = call_sid()
        status, body = await t.call(
            GATHER + "?lang=en&step=menu", sid, caller=US_CALLER, Digits="1"
        )
        assert status == 200
        # The answer came back only after Kafka had the report, on the urgent lane.
        [report] = await t.inbound_records()
        assert report.lane is Lane.URGENT and report.channel == "voice"
        assert report.sender.address == US_CALLER and report.thread == {"call_sid": sid}
        root = parse(body)
        assert verbs(root) == ["Say", "Dial", "Say", "Hangup"]
        assert root.find("Dial").text == HOTLINE

        [conversation] = await t.wait_for_queue("fraud", lambda c: len(c) == 1)
        assert conversation["urgency"] == Urgency.CRITICAL and conversation["channel"] == "voice"


async def test_the_fraud_key_without_a_fraud_line_asks_the_caller_what_happened(
    sqlite_url, monkeypatch, voice_texts
):
    async with twilio_router(sqlite_url, monkeypatch) as t:
        sid = call_sid()
        root = parse((await t.call(GATHER + "?lang=zh&step=menu", sid, Digits="1"))[1])
        assert verbs(root) == ["Gather", "Say", "Hangup"]
        gather = root.find("Gather")
        assert gather.get("input") == "speech" and gather.get("language") == "zh-CN"
        assert action(gather)[1]["step"] == ["fraud"]
        assert [e.lane for e in await t.inbound_records()] == [Lane.URGENT]

        # What the caller then says joins the same conversation; the call ends politely.
        root = parse(
            (
                await t.call(
                    GATHER + "?lang=zh&step=fraud",
                    sid,
                    SpeechResult="昨天晚上少了五百块",
                    Confidence="0.9",
                )
            )[1]
        )
        assert verbs(root) == ["Say", "Hangup"]
        [conversation] = await t.wait_for_queue("fraud", lambda c: len(c) == 1)
        inbound = await t.wait_for_inbound(conversation["id"], 2)
        assert {m["text"] for m in inbound} == {
            "昨天晚上少了五百块",
            voice_texts["zh"]["texts"]["fraud_report"],
        }


# --- speech and voicemail --------------------------------------------------------------------------


async def test_a_call_saying_someone_stole_money_lands_critical_at_the_head_of_the_fraud_queue(
    database_url, monkeypatch
):
    async with twilio_router(database_url, monkeypatch) as t:
        # An older, less urgent conversation already waits in the fraud queue.
        await t.sms("my transfer failed with error E1023, money gone from my balance")
        [older] = await t.wait_for_queue("payments", lambda c: len(c) == 1)
        async with t.http.post(
            t.url(f"/api/conversations/{older['id']}/transfer"),
            headers=await t.login(),
            json={"queue": "fraud"},
        ) as resp:
            assert resp.status == 200

        status, body = await t.call(
            GATHER + "?lang=en&step=menu",
            call_sid(),
            caller=US_CALLER,
            SpeechResult=STOLEN,
            Confidence="0.92",
        )
        assert status == 200
        assert verbs(parse(body)) == ["Say", "Hangup"]  # no fraud line configured: thanks, goodbye
        queue = await t.wait_for_queue("fraud", lambda c: len(c) == 2)
        head = queue[0]
        assert head["channel"] == "voice" and head["urgency"] == Urgency.CRITICAL
        assert head["category"] == "unauthorized_transaction" and head["preview"] == STOLEN
        assert queue[1]["id"] == older["id"]


async def test_urgent_words_are_connected_to_the_fraud_line_when_one_is_configured(
    sqlite_url, monkeypatch, tmp_path
):
    async with twilio_router(
        sqlite_url, monkeypatch, config_dir=config_with(tmp_path, fraud_hotline=HOTLINE)
    ) as t:
        root = parse(
            (
                await t.call(
                    GATHER + "?lang=en&step=menu",
                    call_sid(),
                    caller=US_CALLER,
                    SpeechResult=STOLEN,
                    Confidence="0.9",
                )
            )[1]
        )
        assert root.find("Dial").text == HOTLINE
        root = parse(
            (
                await t.call(
                    GATHER + "?lang=en&step=menu",
                    call_sid(),
                    caller=US_CALLER,
                    SpeechResult="what is the fee for a top up",
                    Confidence="0.9",
                )
            )[1]
        )
        assert root.find("Dial") is None and verbs(root) == ["Say", "Hangup"]


async def test_a_retried_gather_webhook_makes_one_message(sqlite_url, monkeypatch):
    async with twilio_router(sqlite_url, monkeypatch) as t:
        sid = call_sid()
        for _ in range(2):
            await t.call(
                GATHER + "?lang=en&step=menu",
                sid,
                caller=US_CALLER,
                SpeechResult=STOLEN,
                Confidence="0.9",
            )
        records = await t.inbound_records()
        assert len(records) == 2 and len({r.message_id for r in records}) == 1


async def test_silence_leads_to_voicemail_whose_transcript_becomes_the_message(
    sqlite_url, monkeypatch
):
    async with twilio_router(sqlite_url, monkeypatch) as t:
        sid = call_sid()
        root = parse(
            (await t.call(GATHER + "?lang=en&step=menu", sid, caller=US_CALLER, SpeechResult=""))[1]
        )
        assert verbs(root) == ["Say", "Record", "Say", "Hangup"]
        record = root.find("Record")
        assert record.get("transcribe") == "true"
        assert (
            record.get("transcribeCallback")
            == PUBLIC_URL + "/webhooks/twilio/voice/transcription?lang=en"
        )
        assert action(record) == (PUBLIC_URL + "/webhooks/twilio/voice/recorded", {"lang": ["en"]})

        recording = {
            "RecordingSid": "RE" + "c" * 32,
            "RecordingUrl": RECORDING_URL,
            "RecordingDuration": "14",
        }
        ended = parse(
            (
                await t.call(
                    "/webhooks/twilio/voice/recorded?lang=en", sid, caller=US_CALLER, **recording
                )
            )[1]
        )
        assert verbs(ended) == ["Say", "Hangup"]
        assert await t.inbound_records() == []  # English voicemail waits for its transcript

        status, _ = await t.call(
            "/webhooks/twilio/voice/transcription?lang=en",
            sid,
            caller=US_CALLER,
            TranscriptionStatus="completed",
            TranscriptionSid="TR" + "d" * 32,
            TranscriptionText="I forgot my password and the reset code never arrives",
            **recording,
        )
        assert status == 204
        [conversation] = await t.wait_for_queue("accounts", lambda c: len(c) == 1)
        message = (await t.conversation(conversation["id"]))["messages"][0]
        assert message["text"].startswith("I forgot my password")
        assert message["meta"]["attachments"] == [
            {"name": RECORDING_URL, "content_type": "audio/x-wav", "size": 0}
        ]


async def test_low_confidence_speech_counts_as_nothing_useful(sqlite_url, monkeypatch):
    async with twilio_router(sqlite_url, monkeypatch) as t:
        root = parse(
            (
                await t.call(
                    GATHER + "?lang=en&step=menu",
                    call_sid(),
                    caller=US_CALLER,
                    SpeechResult="mumble",
                    Confidence="0.02",
                )
            )[1]
        )
        assert root.find("Record") is not None
        assert await t.inbound_records() == []


async def test_another_key_asks_once_in_words(sqlite_url, monkeypatch):
    async with twilio_router(sqlite_url, monkeypatch) as t:
        root = parse(
            (await t.call(GATHER + "?lang=en&step=menu", call_sid(), caller=US_CALLER, Digits="5"))[
                1
            ]
        )
        gather = root.find("Gather")
        assert gather.get("input") == "speech" and action(gather)[1]["step"] == ["again"]


async def test_a_chinese_voicemail_is_the_recording_published_when_it_ends(
    sqlite_url, monkeypatch, voice_texts
):
    async with twilio_router(sqlite_url, monkeypatch) as t:
        sid = call_sid()
        root = parse((await t.call(GATHER + "?lang=zh&step=again", sid, SpeechResult=""))[1])
        assert root.find("Record").get("transcribe") is None  # Twilio transcribes English only
        await t.call(
            "/webhooks/twilio/voice/recorded?lang=zh",
            sid,
            RecordingSid="RE" + "e" * 32,
            RecordingUrl=RECORDING_URL,
            RecordingDuration="20",
        )
        [voicemail] = await t.inbound_records()
        assert voicemail.text == voice_texts["zh"]["texts"]["voicemail_untranscribed"]
        assert voicemail.attachments[0].name == RECORDING_URL


# --- replies to callers ----------------------------------------------------------------------------


async def test_a_reply_to_a_caller_goes_by_sms_from_the_number_they_called(sqlite_url, monkeypatch):
    async with twilio_router(sqlite_url, monkeypatch) as t:
        await t.call(
            GATHER + "?lang=en&step=menu",
            call_sid(),
            caller=US_CALLER,
            called=OUR_NUMBER,
            SpeechResult=STOLEN,
            Confidence="0.9",
        )
        [conversation] = await t.wait_for_queue("fraud", lambda c: len(c) == 1)
        reply_id = await t.reply(
            conversation["id"], "We froze your wallet. Call us back on this number."
        )
        await t.wait_for_delivery(conversation["id"], reply_id, "sent")
        reply = next(m for m in t.standin.messages if m["body"].startswith("We froze"))
        assert (reply["to"], reply["from"]) == (US_CALLER, OUR_NUMBER)
        assert t.standin.calls == []


async def test_a_reply_to_a_caller_can_be_a_call_back_that_reads_it_out(sqlite_url, monkeypatch):
    async with twilio_router(
        sqlite_url, monkeypatch, env={"SUPPORTROUTER_TWILIO_VOICE_REPLY": "call"}
    ) as t:
        await t.call(
            GATHER + "?lang=zh&step=menu",
            call_sid(),
            SpeechResult="有人用我的钱包付了一笔我不认识的款",
            Confidence="0.8",
        )
        [conversation] = await t.wait_for_queue("fraud", lambda c: len(c) == 1)
        await t.reply(conversation["id"], "我们已冻结您的账户。")
        calls = await t.standin.wait_for("calls", 2)  # the acknowledgement, then the agent's reply
        reply = next(c for c in calls if "我们已冻结您的账户。" in c["twiml"])
        assert (reply["to"], reply["from"]) == (CUSTOMER, OUR_NUMBER)
        say = parse(reply["twiml"]).find("Say")
        assert say.text == "我们已冻结您的账户。" and say.get("language") == "zh-CN"


async def test_a_reply_to_a_withheld_number_fails_for_good_and_shows_failed(
    sqlite_url, monkeypatch
):
    async with twilio_router(sqlite_url, monkeypatch) as t:
        await t.call(
            GATHER + "?lang=en&step=menu",
            call_sid(),
            caller="anonymous",
            SpeechResult=STOLEN,
            Confidence="0.9",
        )
        [conversation] = await t.wait_for_queue("fraud", lambda c: len(c) == 1)
        reply_id = await t.reply(conversation["id"], "Please call us back.")
        failed = await t.wait_for_delivery(conversation["id"], reply_id, "failed")
        assert "not a phone number" in failed["delivery_detail"]
        assert t.standin.requests == []


# --- voice.yaml changed while the router runs ------------------------------------------------------


def rewrite_voice_yaml(config: Path, change) -> Path:
    """Edit voice.yaml in place, as an operator's editor would."""
    path = config / "voice.yaml"
    path.write_text(change(path.read_text(encoding="utf-8")), encoding="utf-8")
    return path


async def test_a_changed_voice_yaml_is_heard_on_the_next_call_without_a_restart(
    sqlite_url, monkeypatch, tmp_path, voice_texts
):
    config = config_with(tmp_path)
    async with twilio_router(sqlite_url, monkeypatch, config_dir=config) as t:
        before = parse((await t.call(VOICE, call_sid(), caller=US_CALLER))[1]).find("Gather")
        assert voice_texts["en"]["texts"]["greeting"] in before.find("Say").text

        def new_menu(text: str) -> str:
            data = yaml.safe_load(text)
            data["gather_timeout_seconds"] = 9
            data["languages"]["en"]["texts"].update(
                greeting="Welcome back to Wallet support.",
                menu="Press 1 to report fraud, or just tell us.",
            )
            return yaml.safe_dump(data, allow_unicode=True)

        rewrite_voice_yaml(config, new_menu)
        after = parse((await t.call(VOICE, call_sid(), caller=US_CALLER))[1]).find("Gather")
        assert (
            after.find("Say").text
            == "Welcome back to Wallet support. Press 1 to report fraud, or just tell us."
        )
        assert after.get("timeout") == "9"


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [
        ("gather_timeout_seconds: 6: 7", "YAML syntax"),
        ("colour: blue", "colour: unknown key"),
        ("gather_timeout_seconds: soon", "gather_timeout_seconds: Input should be a valid integer"),
    ],
    ids=["yaml-error", "unknown-key", "wrong-type"],
)
async def test_a_broken_voice_yaml_is_refused_with_its_line_and_calls_keep_the_menu_in_force(
    sqlite_url, monkeypatch, tmp_path, voice_texts, bad_line, reason
):
    config = config_with(tmp_path, gather_timeout_seconds=6)
    lines = (config / "voice.yaml").read_text(encoding="utf-8").splitlines()
    line = next(i for i, text in enumerate(lines, 1) if text.startswith("gather_timeout_seconds:"))
    async with twilio_router(sqlite_url, monkeypatch, config_dir=config) as t:
        lines[line - 1] = bad_line
        rewrite_voice_yaml(config, lambda _: "\n".join(lines) + "\n")
        with capture_logs() as logs:
            for _ in range(2):
                gather = parse((await t.call(VOICE, call_sid(), caller=US_CALLER))[1]).find(
                    "Gather"
                )
                assert voice_texts["en"]["texts"]["greeting"] in gather.find("Say").text
                assert gather.get("timeout") == "6"
        # Refused once for the change, not once per call.
        [refused] = [
            e for e in logs if e["event"] == "config.refused" and e.get("file") == "voice.yaml"
        ]
        assert refused["log_level"] == "error"
        assert any(p.startswith(f"voice.yaml:{line}: {reason}") for p in refused["problems"]), (
            refused["problems"]
        )


# --- refusals --------------------------------------------------------------------------------------


async def test_a_forged_signature_on_a_voice_webhook_gets_403_and_nothing_reaches_kafka(
    sqlite_url, monkeypatch
):
    async with twilio_router(sqlite_url, monkeypatch) as t:
        params = {"CallSid": call_sid(), "From": CUSTOMER, "To": OUR_NUMBER, "Digits": "1"}
        forged = t.sign(GATHER + "?lang=en&step=menu", {**params, "Digits": "2"})
        status, _ = await t.post(GATHER + "?lang=en&step=menu", params, signature=forged)
        assert status == 403
        assert (await t.post(GATHER + "?lang=en&step=menu", params))[0] == 200  # the genuine one
        assert len(await t.inbound_records()) == 1


@pytest.mark.parametrize(
    ("path", "change", "reason"),
    [
        (VOICE, {"CallSid": "CA123"}, "CallSid is not in the expected format"),
        (VOICE, {"To": ""}, "To is required"),
        (GATHER + "?step=sideways", {}, "step must be one of"),
        (GATHER, {"Digits": "one"}, "Digits is not in the expected format"),
        (GATHER, {"SpeechResult": "hello", "Confidence": "very"}, "Confidence must be a number"),
        ("/webhooks/twilio/voice/transcription", {}, "RecordingSid and RecordingUrl are required"),
    ],
)
async def test_a_malformed_voice_webhook_gets_400_with_the_reason(
    sqlite_url, monkeypatch, path, change, reason
):
    async with twilio_router(sqlite_url, monkeypatch) as t:
        params = {"CallSid": call_sid(), "From": CUSTOMER, "To": OUR_NUMBER, **change}
        status, body = await t.post(path, params)
        assert status == 400 and reason in body
        assert await t.inbound_records() == []


def test_a_bad_voice_yaml_is_refused_with_the_file_line_and_reason(tmp_path):
    config = tmp_path / "config"
    config.mkdir()
    (config / "voice.yaml").write_text(
        "version: 1\nfraud_key: '12'\nfraud_hotline: 'call Bob'\nlanguages: {}\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError) as caught:
        load_voice_config(config)
    problems = [str(p) for p in caught.value.problems]
    assert any(p.startswith("voice.yaml:2: fraud_key") for p in problems), problems
    assert any(p.startswith("voice.yaml:3: fraud_hotline") for p in problems), problems


def test_the_shipped_voice_yaml_loads_and_its_fraud_report_takes_the_urgent_lane():
    from router.policy.rules import Rules

    config, rules = load_voice_config(CONFIG_DIR), Rules(CONFIG_DIR)
    for language in config.languages.values():
        assert rules.lane(language.texts.fraud_report) is Lane.URGENT
