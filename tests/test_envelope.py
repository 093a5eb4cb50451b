import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from router.core.envelope import (
    _MESSAGE_NAMESPACE,
    Channel,
    Classification,
    Envelope,
    Sender,
    Urgency,
    message_id_for,
)


def test_same_provider_message_gets_the_same_message_id():
    assert message_id_for("sms", "SM123") == message_id_for("sms", "SM123")
    assert message_id_for("sms", "SM123") != message_id_for("whatsapp", "SM123")


@settings(derandomize=True, max_examples=500)
@given(
    channel=st.sampled_from([c.value for c in Channel]),
    provider_id=st.text(st.characters(exclude_categories=["Cs"]), max_size=80),
)
def test_a_message_id_is_the_uuid5_of_its_channel_and_provider_id(channel, provider_id):
    # Stored ids were made with uuid.uuid5: a provider's retry must still find its message.
    expected = str(uuid.uuid5(_MESSAGE_NAMESPACE, f"{channel}:{provider_id}"))
    assert message_id_for(channel, provider_id) == expected


def test_envelope_round_trips_through_kafka_bytes_unchanged():
    env = Envelope.new(
        channel=Channel.CHAT,
        channel_message_id="c1",
        conversation_key="chat:k",
        sender=Sender(address="chat:k", name="王"),
        text="转账失败",
        received_at=datetime(2026, 11, 1, tzinfo=UTC),
        classification=Classification(
            category="transaction_failed", urgency=Urgency.HIGH, confidence=0.9, language="zh"
        ),
    )
    assert Envelope.from_bytes(env.to_bytes()) == env
    assert env.kafka_key == b"chat:k"
    assert env.schema_version == 1


def test_envelope_refuses_unknown_fields_and_channels():
    with pytest.raises(ValidationError):
        Envelope.model_validate(
            {
                "message_id": "m",
                "channel": "fax",
                "channel_message_id": "x",
                "conversation_key": "k",
                "sender": {"address": "a"},
                "text": "t",
            }
        )
    good = Envelope.new(
        channel=Channel.SMS,
        channel_message_id="x",
        conversation_key="k",
        sender=Sender(address="+1"),
        text="t",
    ).model_dump()
    with pytest.raises(ValidationError):
        Envelope.model_validate({**good, "surprise": 1})


def test_urgency_ranks_put_critical_first():
    assert sorted(Urgency, key=lambda u: u.rank, reverse=True)[0] is Urgency.CRITICAL
    assert Urgency.HIGH.rank > Urgency.NORMAL.rank > Urgency.LOW.rank
