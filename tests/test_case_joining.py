"""Which conversations join one case, read from the store the dispatcher writes (each database):
a phone number counts only when it is the channel's own or verified; an agent's unlink holds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import sqlalchemy as sa

from router.core.envelope import Envelope
from router.services.cases import CaseKeeper
from router.store.conversations import ConversationStore
from router.store.inbound import Inbound
from tests.conftest import CONFIG_DIR
from tests.routing_helpers import classified, rules_from

PHONE = "+8613800138000"
FRAUD = "someone made a payment from my wallet that I did not make"


@pytest.fixture
async def store(database_url) -> AsyncIterator[ConversationStore]:
    async with ConversationStore(database_url) as store:
        yield store


async def stored(store: ConversationStore, envelope: Envelope) -> dict:
    """The envelope stored as the dispatcher stores it, with its case; its conversation now."""
    keeper = CaseKeeper(store, rules_from(CONFIG_DIR), protect_configured=False)
    on_stored, _, ahead = await keeper.placing([envelope])
    [done] = await store.record_inbound_many(
        [Inbound(envelope, "fraud", lambda *_: None, case_id=ahead.get(envelope.message_id))],
        on_stored,
    )
    conversation = await store.conversation(done.conversation["id"])
    assert conversation is not None
    return conversation


def report(channel: str, key: str, address: str, **thread: str) -> Envelope:
    envelope = classified("unauthorized_transaction", "critical", channel=channel, key=key)
    return envelope.model_copy(
        update={"sender": envelope.sender.model_copy(update={"address": address}), "thread": thread}
    )


async def test_a_telegram_user_with_a_verified_phone_joins_the_case_of_that_phones_sms(store):
    sms = await stored(store, report("sms", f"sms|{PHONE}|+15005550006", PHONE))
    telegram = await stored(store, report("telegram", "telegram:42", "42", verified_phone=PHONE))
    assert telegram["case_id"] == sms["case_id"]


async def test_an_email_joins_only_once_its_address_is_verified_for_the_phone(store):
    sms = await stored(store, report("sms", f"sms|{PHONE}|+15005550006", PHONE))
    unverified = await stored(store, report("email", "mail-1", "li@example.com"))
    assert unverified["case_id"] != sms["case_id"]
    await store.link_identity("email", "li@example.com", PHONE)
    verified = await stored(store, report("email", "mail-2", "li@example.com"))
    assert verified["case_id"] == sms["case_id"]


async def test_a_number_typed_into_a_chat_is_not_an_identity(store):
    sms = await stored(store, report("sms", f"sms|{PHONE}|+15005550006", PHONE))
    chat = await stored(store, report("chat", "chat-1", "chat-1", verified_phone=""))
    assert chat["case_id"] != sms["case_id"]


async def test_another_phone_or_a_report_outside_the_window_opens_its_own_case(store):
    first = await stored(store, report("sms", f"sms|{PHONE}|+15005550006", PHONE))
    other = await stored(store, report("sms", "sms|+8613900139000|+15005550006", "+8613900139000"))
    late_envelope = report("whatsapp", f"whatsapp|whatsapp:{PHONE}|x", f"whatsapp:{PHONE}")
    late = await stored(
        store,
        late_envelope.model_copy(
            update={"received_at": late_envelope.received_at + timedelta(minutes=31)}
        ),
    )
    assert len({first["case_id"], other["case_id"], late["case_id"]}) == 3


async def test_a_conversation_an_agent_unlinked_does_not_rejoin_on_its_next_message(store):
    sms = await stored(store, report("sms", f"sms|{PHONE}|+15005550006", PHONE))
    key = f"whatsapp|whatsapp:{PHONE}|x"
    whatsapp = await stored(store, report("whatsapp", key, f"whatsapp:{PHONE}"))
    assert whatsapp["case_id"] == sms["case_id"]
    own = await store.cases.unlink(sms["case_id"], whatsapp["id"], "li.na")
    again = await stored(store, report("whatsapp", key, f"whatsapp:{PHONE}"))
    assert again["id"] == whatsapp["id"] and again["case_id"] == own


async def test_in_one_batch_reports_of_one_phone_join_and_other_messages_open_their_own(store):
    """The dispatcher stores a chunk at once: messages with nothing to join by open their cases
    together, and a report later in the chunk still finds the case of an earlier one."""
    other_phone = "+8613900139000"
    question = classified("payments", "normal", channel="sms", key=f"sms|{other_phone}|x")
    question = question.model_copy(
        update={"sender": question.sender.model_copy(update={"address": other_phone})}
    )
    envelopes = [
        report("sms", f"sms|{PHONE}|+15005550006", PHONE),
        question,
        report("whatsapp", f"whatsapp|whatsapp:{PHONE}|x", f"whatsapp:{PHONE}"),
    ]
    keeper = CaseKeeper(store, rules_from(CONFIG_DIR), protect_configured=False)
    on_stored, placed, _ = await keeper.placing(envelopes)
    done = await store.record_inbound_many(
        [Inbound(e, "fraud", lambda *_: None) for e in envelopes], on_stored
    )
    first, alone, joined = [await store.conversation(d.conversation["id"]) for d in done]
    assert first and alone and joined
    assert joined["case_id"] == first["case_id"] != alone["case_id"]
    assert placed == {c["id"]: c["case_id"] for c in (first, alone, joined)}
    case = await store.cases.case(first["case_id"])
    assert case is not None
    assert [e["kind"] for e in case["events"]] == ["case.opened", "case.joined"]


async def test_a_customers_next_messages_stay_in_the_case_their_conversation_is_in(store):
    """A follow-up finds its conversation's case, alone or in a chunk beside a new customer's
    first message (which opens a case of its own): no second case, no second opening."""
    question = classified("payments", "normal", channel="sms", key=f"sms|{PHONE}|q")
    first = await stored(store, question)
    again = classified("payments", "normal", channel="sms", key=f"sms|{PHONE}|q")
    assert (await stored(store, again))["case_id"] == first["case_id"]

    newcomer = classified("payments", "normal", channel="sms", key="sms|+8613700137000|q")
    third = classified("general", "low", channel="sms", key=f"sms|{PHONE}|q")
    keeper = CaseKeeper(store, rules_from(CONFIG_DIR), protect_configured=False)
    on_stored, placed, _ = await keeper.placing([newcomer, third])
    done = await store.record_inbound_many(
        [Inbound(e, "fraud", lambda *_: None) for e in (newcomer, third)],
        on_stored,
    )
    opened, followed = [await store.conversation(d.conversation["id"]) for d in done]
    assert opened and followed and followed["id"] == first["id"]
    assert followed["case_id"] == first["case_id"] != opened["case_id"]
    assert placed == {opened["id"]: opened["case_id"], first["id"]: first["case_id"]}
    case = await store.cases.case(first["case_id"])
    assert case is not None
    assert [e["kind"] for e in case["events"]] == ["case.opened"]


async def test_a_conversation_opened_in_the_case_drawn_for_it_is_never_moved(store):
    """A message with nothing to join by gets its case drawn before it is stored (as the
    dispatcher stores it): its conversation is inserted in that case, no UPDATE moves it, and
    a report later in the chunk, in the same conversation, finds it there. A report, which may
    join another case, gets none drawn."""
    other_phone = "+8613900139000"
    key = f"sms|{other_phone}|x"
    question = classified("payments", "normal", channel="sms", key=key)
    question = question.model_copy(
        update={"sender": question.sender.model_copy(update={"address": other_phone})}
    )
    envelopes = [question, report("sms", key, other_phone)]
    keeper = CaseKeeper(store, rules_from(CONFIG_DIR), protect_configured=False)
    on_stored, placed, ahead = await keeper.placing(envelopes)
    assert set(ahead) == {question.message_id}
    statements: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append(" ".join(statement.split()))

    sa.event.listen(store.engine.sync_engine, "before_cursor_execute", seen)
    try:
        done = await store.record_inbound_many(
            [
                Inbound(e, "fraud", lambda *_: None, case_id=ahead.get(e.message_id))
                for e in envelopes
            ],
            on_stored,
        )
    finally:
        sa.event.remove(store.engine.sync_engine, "before_cursor_execute", seen)
    assert [d.created for d in done] == [True, False]
    conversation = await store.conversation(done[0].conversation["id"])
    assert conversation is not None
    assert conversation["case_id"] == ahead[question.message_id] == placed[conversation["id"]]
    assert any(s.startswith("INSERT INTO conversations") for s in statements)
    assert not [s for s in statements if s.startswith("UPDATE conversations SET case_id")]
    case = await store.cases.case(conversation["case_id"])
    assert case is not None
    assert [e["kind"] for e in case["events"]] == ["case.opened"]
    assert [c["id"] for c in case["conversations"]] == [conversation["id"]]


async def test_a_later_message_in_the_chunk_stays_in_the_case_an_earlier_one_joined(store):
    """A report moves its conversation to the case of the same phone's earlier report; the
    customer's next message, in the same chunk, names nothing to join by: it stays in the case
    the report moved the conversation to, not the one it was in when the chunk began."""
    elsewhere = await stored(store, report("whatsapp", f"whatsapp|whatsapp:{PHONE}|x", PHONE))
    key = f"sms|{PHONE}|+15005550006"
    question = classified("payments", "normal", channel="sms", key=key)
    question = question.model_copy(
        update={"sender": question.sender.model_copy(update={"address": PHONE})}
    )
    before = await stored(store, question)
    assert before["case_id"] != elsewhere["case_id"]

    then = report("sms", key, PHONE)
    thanks = classified("general", "low", channel="sms", key=key, text="thanks, waiting")
    thanks = thanks.model_copy(update={"sender": then.sender})
    keeper = CaseKeeper(store, rules_from(CONFIG_DIR), protect_configured=False)
    on_stored, placed, _ = await keeper.placing([then, thanks])
    await store.record_inbound_many(
        [Inbound(e, "fraud", lambda *_: None) for e in (then, thanks)], on_stored
    )
    after = await store.conversation(before["id"])
    assert after is not None and after["case_id"] == elsewhere["case_id"]
    assert placed == {before["id"]: elsewhere["case_id"]}


async def test_a_chunk_of_later_messages_changes_each_conversation_as_its_own_message_says(store):
    """Later messages of several conversations in one chunk: each conversation shows its own
    last message, and only the one whose message is more urgent is raised and requeued."""
    keys = [f"sms|+861380013800{n}|x" for n in range(3)]
    opened = [
        await stored(store, classified("payments", "normal", channel="sms", key=k)) for k in keys
    ]
    texts = ["any news?", "someone took money from my wallet", "still waiting"]
    later = [
        classified("payments", "normal", channel="sms", key=keys[0], text=texts[0]),
        classified(
            "unauthorized_transaction", "critical", channel="sms", key=keys[1], text=texts[1]
        ),
        classified("payments", "low", channel="sms", key=keys[2], text=texts[2]),
    ]
    done = await store.record_inbound_many([Inbound(e, "fraud", lambda *_: None) for e in later])
    assert [d.requeued for d in done] == [False, True, False]
    now = [await store.conversation(c["id"]) for c in opened]
    assert [c["preview"] for c in now if c] == texts
    assert [(c["urgency"], c["queue"]) for c in now if c] == [
        ("normal", opened[0]["queue"]),
        ("critical", "fraud"),
        ("normal", opened[2]["queue"]),
    ]
