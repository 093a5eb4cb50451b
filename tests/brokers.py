"""The two Kafka-protocol brokers the Kafka-facing tests run on.

- `tansu`: the embedded Tansu broker (what `make run` starts), memory only, one per test.
- `kafka`: Apache Kafka 4.x in KRaft mode (what production runs). One broker is shared by the
  session (SUPPORTROUTER_TEST_KAFKA, set by `make test`; otherwise started here from the same
  jars), so each test gets its own topic names and consumer-group prefix and never reads
  another's records. A test that stops and restarts its broker gets one of its own.

`--broker=tansu|kafka|both` (or SUPPORTROUTER_TEST_BROKERS) picks which the tests run on.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from router.bus.embedded import EmbeddedBroker
from router.core.settings import Settings, Topics

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("tansu", "kafka")


def shared_kafka_address() -> str | None:
    """The session's Apache Kafka, as `make test` (or `python -m devenv up`) started it."""
    if os.environ.get("SUPPORTROUTER_TEST_KAFKA"):
        return os.environ["SUPPORTROUTER_TEST_KAFKA"]
    state = ROOT / "var" / "devenv.json"
    if state.exists():
        address = json.loads(state.read_text()).get("SUPPORTROUTER_TEST_KAFKA")
        from devenv.kafka import answers

        if address and answers(address):
            return address
    return None


def names_of_my_own() -> dict[str, Any]:
    """Topic names and a consumer-group prefix no other test uses."""
    tag = uuid.uuid4().hex[:10]
    topics = Topics(**{field: f"t{tag}.{name}" for field, name in Topics().model_dump().items()})
    return {"topics": topics, "consumer_group_prefix": f"g{tag}"}


@dataclass
class Broker:
    """One broker as a test sees it: where it is and the settings a bus or router needs on it."""

    kind: str
    bootstrap_servers: str
    overrides: dict[str, Any] = field(default_factory=dict)
    _server: Any = None  # EmbeddedBroker or devenv.kafka.KafkaServer, when the test owns it

    @property
    def embedded(self) -> bool:
        """Tansu: the embedded broker's consumer-group timing (KafkaBus's `embedded`)."""
        return self.kind == "tansu"

    def env(self) -> dict[str, str]:
        """The same as SUPPORTROUTER_ environment variables, for a router in its own process."""
        env = {"SUPPORTROUTER_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers}
        if "consumer_group_prefix" in self.overrides:
            env["SUPPORTROUTER_CONSUMER_GROUP_PREFIX"] = self.overrides["consumer_group_prefix"]
        if "topics" in self.overrides:
            for name, topic in self.overrides["topics"].model_dump().items():
                env[f"SUPPORTROUTER_TOPICS__{name.upper()}"] = topic
        return env

    def settings(self, **values: Any) -> Settings:
        """Settings for a bus on this broker (names of its own on a shared one)."""
        return Settings(**{**self.overrides, **values})

    async def stop(self) -> None:
        """A clean stop of a broker the test owns (SIGTERM: Kafka's controlled shutdown)."""
        if self._server is None:
            raise RuntimeError("only a broker of the test's own can be stopped")
        if isinstance(self._server, EmbeddedBroker):
            await self._server.stop()
        else:
            self._server.stop()

    async def start(self) -> None:
        """Start a stopped broker of the test's own again, on the same port and storage."""
        if self._server is None:
            raise RuntimeError("only a broker of the test's own can be started")
        if isinstance(self._server, EmbeddedBroker):
            await self._server.start()
        else:
            self._server.start()  # blocks until it answers; nothing else can reach it anyway


def router_env(kind: str, shared_kafka: str | None) -> dict[str, str]:
    """`router_overrides` as SUPPORTROUTER_ variables, for a router in its own process."""
    overrides = router_overrides(kind, shared_kafka)
    if not overrides:
        return {}
    broker = Broker(kind, overrides.pop("kafka_bootstrap_servers"), overrides)
    return broker.env()


def router_overrides(kind: str, shared_kafka: str | None) -> dict[str, Any]:
    """What a whole Router needs: Tansu is embedded by the Router itself (as `make run` does);
    Apache Kafka is the shared one, with names of the test's own."""
    if kind == "tansu":
        return {}
    assert shared_kafka is not None
    return {"kafka_bootstrap_servers": shared_kafka, **names_of_my_own()}
