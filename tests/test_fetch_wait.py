"""How long a consumer's fetch may wait at the broker: short on the embedded broker, where the
wait is each hop's latency (it answers only when the wait is over), Kafka's own on a cluster."""

import pytest
from pydantic import ValidationError

from router.bus.kafka import EMBEDDED_FETCH_WAIT_MS, KafkaBus
from router.core.settings import Settings


async def _wait_ms(settings: Settings, *, embedded: bool) -> int:
    consumer = KafkaBus(settings, "127.0.0.1:1", embedded=embedded).consumer(["t"], "g")
    return consumer._fetch_max_wait_ms  # what aiokafka sends in each fetch (never started here)


async def test_the_embedded_broker_gets_a_short_fetch_wait_and_a_cluster_kafkas_default(
    monkeypatch,
):
    monkeypatch.delenv("SUPPORTROUTER_CONSUMER_FETCH_WAIT_MS", raising=False)
    settings = Settings()
    assert await _wait_ms(settings, embedded=True) == EMBEDDED_FETCH_WAIT_MS < 500
    assert await _wait_ms(settings, embedded=False) == 500


async def test_the_fetch_wait_setting_applies_to_both(monkeypatch):
    monkeypatch.setenv("SUPPORTROUTER_CONSUMER_FETCH_WAIT_MS", "200")
    settings = Settings()
    assert await _wait_ms(settings, embedded=True) == 200
    assert await _wait_ms(settings, embedded=False) == 200


@pytest.mark.parametrize("value", ["0", "-5", "60001", "soon"])
def test_a_wrong_fetch_wait_is_refused_with_its_name(monkeypatch, value):
    monkeypatch.setenv("SUPPORTROUTER_CONSUMER_FETCH_WAIT_MS", value)
    with pytest.raises(ValidationError) as refused:
        Settings()
    assert "consumer_fetch_wait_ms" in str(refused.value)
