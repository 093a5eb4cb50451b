"""Lanes: the gateway's pre-screen picks the urgent lane, and an urgent message overtakes a backlog.

Kafka has no priority queue, so priority is made of lanes: anything that may be fraud, a
takeover or a stolen unlocked phone goes to support.inbound.urgent, and no stage after it lets
the standard lane delay it.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer

from router.app import Router
from router.core.envelope import Channel, Envelope, Lane, Sender
from router.store.schema import conversations, messages
from tests.chat_helpers import chat_ws_url, wait_for_queue
from tests.conftest import CONFIG_DIR, new_router, router_settings, supportrouter
from tests.kafka_helpers import read_topic, records_in

BACKLOG = 5000
STANDARD_TEXTS = [
    "what does it cost to send money to another country",
    "怎么修改我的收货地址",
    "can I have the wallet on my phone and my tablet",
    "我忘记登录密码了",
    "is there a fee for topping up by card",
    "换了新手机，以前的记录还在吗",
]


@pytest.mark.parametrize(
    "text",
    [
        "someone made a payment from my wallet that I did not make",
        "有人用我的钱包转走了两千块，不是我转的",
        "there are three withdrawals I don't recognise, freeze my card now",
        "我的钱包被盗刷了",
        "my phone was stolen while it was unlocked and the wallet was open",
        "有人现在还登录着我的账号，我踢不掉",
        "a caller says he is from support and he can see my screen right now through anydesk",
    ],
)
def test_anything_that_may_be_fraud_or_a_takeover_takes_the_urgent_lane(rules, text):
    assert rules.lane(text) is Lane.URGENT


@pytest.mark.parametrize(
    "text", STANDARD_TEXTS + ["my transfer failed, can you check it?", "提现手续费是多少"]
)
def test_ordinary_questions_take_the_standard_lane(rules, text):
    assert rules.lane(text) is Lane.STANDARD


# Fraud reports worded like none of the rules: the model alone calls them fraud, critical.
MODEL_ONLY_FRAUD = [
    "there is a 350 dollar charge to an online shop on my wallet that i have no idea about",
    "I see two payments to an unknown game store that were not me",
]


@pytest.mark.parametrize("text", MODEL_ONLY_FRAUD)
def test_a_fraud_report_no_rule_words_takes_the_urgent_lane_where_the_gateway_classifies(
    rules, text
):
    """The pre-screen alone leaves it on the standard lane (a classifier stage lifts it later);
    the gateway that classifies (SUPPORTROUTER_CLASSIFY_IN) sends it urgent at once, since no
    stage after it could move it out of the standard lane's backlog."""
    lane, classification = rules.screen(text, channel="sms")
    assert not [r for r in classification.rules if not r.startswith("model:")], classification
    assert (classification.category, classification.urgency) == (
        "unauthorized_transaction",
        "critical",
    )
    assert (rules.lane(text), lane) == (Lane.STANDARD, Lane.URGENT)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("broker_kind", ["tansu"], indirect=True)
async def test_the_gateway_classifies_each_message_once_on_its_way_into_kafka(running_router):
    """On the embedded broker: the record on the urgent lane carries its classification, and
    support.classified carries nothing (the hop a classifier stage would add)."""
    r = running_router
    bus = r.router.bus
    assert not r.router.settings.classifier_stage
    token = await r.chat_session()
    async with r.http.ws_connect(await r.chat_ws_url(token)) as ws:
        await ws.receive_json()
        await ws.send_json({"type": "message", "text": MODEL_ONLY_FRAUD[0], "id": "m1"})
        assert (await ws.receive_json())["type"] == "accepted"
    [record] = await read_topic(bus, bus.topics.inbound_urgent, lambda found: len(found) >= 1)
    classification = record["value"]["classification"]
    assert (classification["category"], classification["urgency"]) == (
        "unauthorized_transaction",
        "critical",
    )
    admin = await r.login()
    await wait_for_queue(r, admin, "fraud", lambda conversations: len(conversations) == 1)
    for topic in (bus.topics.classified, bus.topics.classified_urgent):
        assert await records_in(bus, topic) == 0, topic


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("broker_kind", ["tansu"], indirect=True)
async def test_a_message_the_gateway_could_not_classify_is_accepted_and_classified_further_on(
    running_router, monkeypatch
):
    """A fault in the classifier at the gateway is no 500: the message goes on unclassified (on
    the pre-screen's lane) and the dispatcher classifies it."""
    r = running_router

    def broken(*args, **kwargs):
        raise RuntimeError("the classifier broke")

    monkeypatch.setattr(r.router.rules, "screen", broken)
    token = await r.chat_session()
    async with r.http.ws_connect(await r.chat_ws_url(token)) as ws:
        await ws.receive_json()
        await ws.send_json({"type": "message", "text": MODEL_ONLY_FRAUD[1], "id": "m1"})
        assert (await ws.receive_json())["type"] == "accepted"
    [record] = await read_topic(r.router.bus, r.router.bus.topics.inbound_standard, any)
    assert record["value"]["classification"] is None
    admin = await r.login()
    [conversation] = await wait_for_queue(r, admin, "fraud", lambda found: len(found) == 1)
    assert (conversation["category"], conversation["urgency"]) == (
        "unauthorized_transaction",
        "critical",
    )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("broker_kind", ["tansu"], indirect=True)
async def test_messages_taken_in_one_turn_are_classified_together_each_as_it_would_be_alone(
    running_router, monkeypatch
):
    """The gateway classifies the messages of one turn of its loop together: each gets its own
    lane and classification, and a fault on one leaves the others classified."""
    r = running_router
    intake, rules = r.router.intake, r.router.rules
    assert intake is not None and intake.classifies
    unlucky = "this one breaks the classifier"
    texts = [*MODEL_ONLY_FRAUD, *STANDARD_TEXTS[:3], unlucky, *STANDARD_TEXTS[3:]]
    alone = {text: rules.screen(text, Channel.CHAT, None) for text in texts if text != unlucky}
    screen = rules.screen

    def screen_unless_unlucky(text, *args, **kwargs):
        if text == unlucky:
            raise RuntimeError("the classifier broke")
        return screen(text, *args, **kwargs)

    monkeypatch.setattr(rules, "screen", screen_unless_unlucky)
    envelopes = [
        Envelope.new(
            channel=Channel.CHAT,
            channel_message_id=f"turn-{i}",
            conversation_key=f"chat:turn-{i}",
            sender=Sender(address=f"chat:turn-{i}"),
            text=text,
        )
        for i, text in enumerate(texts)
    ]
    turns, prepared = intake.turns, intake.prepared
    published = await asyncio.gather(*(intake.publish(e) for e in envelopes))

    assert (intake.turns - turns, intake.prepared - prepared) == (1, len(texts))
    for text, envelope in zip(texts, published, strict=True):
        if text == unlucky:
            assert (envelope.lane, envelope.classification) == (rules.lane(text), None)
        else:
            assert (envelope.lane, envelope.classification) == alone[text], text
    assert [e.lane for e in published[:2]] == [Lane.URGENT, Lane.URGENT]  # the model's fraud


def test_the_pre_screen_reads_the_email_subject_too(rules):
    assert (
        rules.lane("Please call me back.", subject="Unauthorised payment on my account")
        is Lane.URGENT
    )


def test_an_explicit_this_is_not_fraud_keeps_the_standard_lane(rules):
    assert (
        rules.lane("I did make that payment myself, it is not fraud, just tell me the fee")
        is Lane.STANDARD
    )


async def _inbound_stored(router: Router) -> int:
    async with router.store.engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(messages).where(messages.c.direction == "in")
        return (await conn.execute(query)).scalar_one()


async def _urgent_position(router: Router, conversation_key: str) -> tuple[int, dict] | None:
    """How many inbound messages the store took before the urgent one, and its conversation."""
    async with router.store.engine.connect() as conn:
        row = (
            (
                await conn.execute(
                    sa.select(messages.c.seq, conversations)
                    .join(conversations, messages.c.conversation_id == conversations.c.id)
                    .where(
                        conversations.c.conversation_key == conversation_key,
                        messages.c.direction == "in",
                    )
                )
            )
            .mappings()
            .first()
        )
        if row is None:
            return None
        ahead = (
            await conn.execute(
                sa.select(sa.func.count())
                .select_from(messages)
                .where(messages.c.direction == "in", messages.c.seq < row["seq"])
            )
        ).scalar_one()
    return ahead, dict(row)


async def _wait_for(condition, what: str, timeout: float = 180.0):
    async with asyncio.timeout(timeout):
        while True:
            result = await condition()
            if result:
                return result
            await asyncio.sleep(0.05)
    raise AssertionError(what)  # pragma: no cover - asyncio.timeout raises first


async def test_an_urgent_message_overtakes_a_backlog_of_5000_standard_ones_all_the_way_into_a_queue(
    tmp_path, broker_kind, request
):
    settings = router_settings(
        f"sqlite+aiosqlite:///{tmp_path}/store.db",
        broker_kind,
        request,
        channels=["chat"],
        log_level="warning",
    )
    # Where the gateway classifies (the embedded broker), even a report no rule words takes the
    # urgent lane. A classifier stage (on Kafka) has the pre-screen's rules only in front of it:
    # such a report waits for the stage to reach it behind the standard backlog, so there the
    # report is one the rules word (docs/classifier.md, "Lanes").
    urgent_text = (
        "someone is taking money out of my wallet right now, these are transfers I did not make"
        if settings.classifier_stage
        else MODEL_ONLY_FRAUD[1]
    )
    async with new_router(settings) as router, aiohttp.ClientSession() as http:
        assert router.dispatcher is not None
        chunk = router.dispatcher.loop.chunk  # the standard lane's records handled at a time
        # The backlog goes straight onto the standard lane, as a burst from every channel would.
        producer = AIOKafkaProducer(
            bootstrap_servers=router.bus.bootstrap_servers, acks="all", linger_ms=20
        )
        await producer.start()
        try:
            sends = []
            for i in range(BACKLOG):
                envelope = Envelope.new(
                    channel=Channel.SMS,
                    channel_message_id=f"backlog-{i}",
                    conversation_key=f"sms:+1555{i:07d}",
                    sender=Sender(address=f"+1555{i:07d}"),
                    text=STANDARD_TEXTS[i % len(STANDARD_TEXTS)],
                    lane=Lane.STANDARD,
                )
                sends.append(
                    await producer.send(
                        router.bus.topics.inbound_standard,
                        envelope.to_bytes(),
                        key=envelope.kafka_key,
                    )
                )
            await asyncio.gather(*sends)
        finally:
            await producer.stop()

        # Let the backlog flow into the store before the urgent one.
        await _wait_for(
            lambda: _count_at_least(router, 100), "the backlog never started reaching the store"
        )
        stored_when_sent = await _inbound_stored(router)

        base = f"http://127.0.0.1:{router.gateway.port}"
        async with http.post(base + "/chat/sessions", json={"name": "Urgent"}) as r:
            token = (await r.json())["session"]
        session = await router.store.chat_session(token)
        async with http.ws_connect(await chat_ws_url(http, base, token)) as ws:
            await ws.send_json({"type": "message", "text": urgent_text, "id": "urgent-1"})
            ahead, conversation = await _wait_for(
                lambda: _urgent_position(router, session["conversation_key"]),
                "the urgent message never reached the store",
            )

    assert conversation["category"] == "unauthorized_transaction"
    assert conversation["urgency"] == "critical" and conversation["queue"] == "fraud"
    # Order, not time: when the urgent message took its place, most of the backlog had not...
    assert ahead < BACKLOG // 2, (
        f"{ahead} of {BACKLOG} backlog messages were stored before the urgent one"
    )
    # ... and it passed every backlog message still in flight when it arrived, give or take what
    # the standard lane had in hand. In this one process a standard chunk runs to its end before
    # anything else on the loop, and the urgent message waits three times on its way (the
    # journal's commit, Kafka's acknowledgement, the urgent lane's fetch): up to a chunk may be
    # stored at each. Measured: two chunks (400) in most runs, three in one run of three or four,
    # before and after the gateway prepared a turn's messages together. Without the lanes it
    # would be most of the backlog.
    overtaken_by = ahead - stored_when_sent
    assert overtaken_by <= 3 * chunk, (
        f"{overtaken_by} backlog messages reached the store after the urgent one was sent and"
        f" before it (chunks of {chunk})"
    )


async def _count_at_least(router: Router, n: int) -> bool:
    return await _inbound_stored(router) >= n


@pytest.mark.parametrize(("classify_in", "lane"), [("auto", "urgent"), ("classifier", "standard")])
def test_simulate_shows_the_lane_the_gateway_would_pick(tmp_path, classify_in, lane):
    """On the embedded default the gateway classifies, so a report only the model recognises is
    urgent; with a classifier stage the pre-screen's rules pick the lane (the stage lifts it)."""
    run = supportrouter(
        "simulate",
        MODEL_ONLY_FRAUD[0],
        "--channel",
        "sms",
        cwd=tmp_path,
        SUPPORTROUTER_CONFIG_DIR=str(CONFIG_DIR),
        SUPPORTROUTER_CLASSIFY_IN=classify_in,
        SUPPORTROUTER_KAFKA_BOOTSTRAP_SERVERS="",  # the embedded default, whatever the shell says
    )
    assert run.returncode == 0, run.stderr
    shown = json.loads(run.stdout)
    assert (shown["lane"], shown["urgency"]) == (lane, "critical")
