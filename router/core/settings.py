"""Process settings: every one has a default and a SUPPORTROUTER_ environment variable."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _registry() -> dict[str, str]:
    from channels import REGISTRY

    return REGISTRY


class Topics(BaseModel):
    inbound_urgent: str = "support.inbound.urgent"
    inbound_standard: str = "support.inbound.standard"
    classified: str = "support.classified"
    # Classified urgent-lane or critical messages: the dispatcher drains this topic before
    # support.classified, so an urgent message never waits behind standard ones already classified.
    classified_urgent: str = "support.classified.urgent"
    outbound: str = "support.outbound"
    events: str = "support.events"
    dlq: str = "support.dlq"

    def all(self) -> list[str]:
        return list(self.model_dump().values())


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SUPPORTROUTER_", env_nested_delimiter="__", extra="ignore"
    )

    http_host: str = "0.0.0.0"
    http_port: int = 8080
    smtp_port: int = 2525
    public_url: str | None = None

    database_url: str = "sqlite+aiosqlite:///var/supportrouter.db"
    kafka_bootstrap_servers: str | None = Field(
        default=None, description="unset: start the embedded broker"
    )
    embedded_kafka_port: int | None = None
    topics: Topics = Topics()
    partitions: int = 3
    # Replicas per topic when the router creates them: 1 on one broker, 3 on a production
    # cluster (with min.insync.replicas=2 on the brokers, so acks=all means two copies).
    replication_factor: int = 1
    consumer_group_prefix: str = "supportrouter"
    # A new consumer group waits half this long before its first assignment on the embedded
    # broker, so the embedded default uses a short one; Kafka itself refuses less than 6000.
    consumer_session_timeout_ms: int | None = None
    # Seconds a publish waits for Kafka's acknowledgement before it fails (the channels then
    # answer 503 or 451, so the sender retries) instead of blocking while the broker is away.
    publish_timeout: float = 5.0

    channels: list[str] = Field(
        default_factory=lambda: list(_registry()),
        description="channels this router runs (default: every one in channels.REGISTRY)",
    )
    config_dir: Path = Path("config")
    admin_password: SecretStr | None = None
    log_format: str = Field(default="auto", description="auto | json | console")
    log_level: str = "info"

    max_body_bytes: int = 64 * 1024
    max_chat_text_chars: int = 4000
    agent_token_ttl_seconds: int = 12 * 3600

    @field_validator("channels")
    @classmethod
    def _known_channels(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in _registry()]
        if unknown:
            raise ValueError(f"unknown channels {unknown}; known: {sorted(_registry())}")
        return value

    @property
    def embedded(self) -> bool:
        return not self.kafka_bootstrap_servers
