"""Process settings: the one model that reads the environment.

Every setting has a default and an environment variable: SUPPORTROUTER_ + its name, nested ones
with "__" (SUPPORTROUTER_TOPICS__DLQ). The channels' sections (router/core/channel_settings.py)
keep the names operators already use: SUPPORTROUTER_TWILIO_*, SUPPORTROUTER_TELEGRAM_*, the email
channel's SUPPORTROUTER_SMTP_*/IMAP_*/..., and the providers' own TWILIO_AUTH_TOKEN,
TELEGRAM_BOT_TOKEN and the like. Library code gets these values passed in and never reads the
environment itself.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from sqlalchemy.engine import make_url

from router.core.channel_settings import EmailSettings, Section, TelegramSettings, TwilioSettings

# The drivers the store runs on, by database: a URL that names only the database gets its driver.
STORE_DRIVERS = {"sqlite": "aiosqlite", "postgresql": "asyncpg"}


def store_url(value: str) -> str:
    """A database URL as the store opens it: `postgresql://` and `postgres://` (what servers and
    hosting services hand out) mean asyncpg, `sqlite://` means aiosqlite; anything else is
    refused with what the store takes, here, not as a traceback from deep inside a start."""
    scheme, separator, rest = value.partition("://")
    if not separator:
        raise ValueError(
            "not a database URL (sqlite+aiosqlite:///path or postgresql://user@host/db)"
        )
    database, _, driver = scheme.lower().partition("+")
    database = "postgresql" if database == "postgres" else database
    wanted = STORE_DRIVERS.get(database)
    if wanted is None:
        raise ValueError(f"the store runs on SQLite or PostgreSQL, not {database!r}")
    if driver and driver != wanted:
        raise ValueError(f"the store reaches {database} through {wanted}, not {driver!r}")
    return f"{database}+{wanted}://{rest}"


def _registry() -> dict[str, str]:
    from channels import REGISTRY

    return REGISTRY


class Topics(BaseModel):
    # Topic names. Accepted messages the pre-screen put in the urgent lane.
    inbound_urgent: str = "support.inbound.urgent"
    # Every other accepted message.
    inbound_standard: str = "support.inbound.standard"
    # Classified messages, for the dispatcher.
    classified: str = "support.classified"
    # Classified urgent-lane or critical messages: the dispatcher drains this topic before
    # support.classified, so an urgent message never waits behind standard ones already classified.
    classified_urgent: str = "support.classified.urgent"
    # Replies, for the sender.
    outbound: str = "support.outbound"
    # What happened (assignments, replies, status), for the console and other listeners.
    events: str = "support.events"
    # Records a stage could not handle, with the error (`supportrouter dlq`).
    dlq: str = "support.dlq"

    def all(self) -> list[str]:
        return list(self.model_dump().values())


class _SectionsFromEnvironment(EnvSettingsSource):
    """Each channel section's fields, from the variable names the section gives them."""

    def __call__(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for name, info in self.settings_cls.model_fields.items():
            section = info.annotation
            if not (isinstance(section, type) and issubclass(section, Section)):
                continue
            found = {
                field: self.env_vars[env.lower()]
                for field, env in section.env_names().items()
                if env.lower() in self.env_vars
            }
            if found:
                data[name] = found
        return data


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SUPPORTROUTER_", env_nested_delimiter="__", extra="ignore"
    )

    # The gateway's listening address (chat, webhooks, API, console).
    http_host: str = "0.0.0.0"
    # The gateway's port.
    http_port: int = 8080
    # The SMTP listener for forwarded mail.
    smtp_port: int = 2525
    # A service run alone serves /metrics, /healthz and /readyz on this port (unset: 8081 for the
    # classifier, 8082 the dispatcher, 8083 the sender; the gateway serves them on its own).
    status_port: int | None = None
    # The URL providers call; webhook signatures are checked against it.
    public_url: str | None = None

    # The store: SQLite (the default) or PostgreSQL, postgresql://user@host/db (asyncpg).
    database_url: str = "sqlite+aiosqlite:///var/supportrouter.db"
    # A service run alone (`supportrouter run gateway`) whose database is not at the schema's
    # latest revision waits this long for `supportrouter db upgrade`, then exits; 0: at once.
    schema_wait_seconds: float = Field(default=60.0, ge=0)
    kafka_bootstrap_servers: str | None = Field(
        default=None, description="unset: start the embedded broker"
    )
    # The embedded broker's port (unset: a free one).
    embedded_kafka_port: int | None = None
    # The embedded broker keeps every record in memory and has no retention: once its resident
    # memory passes this many MB, it is started again, empty, at a moment when every consumer
    # group has read everything, or after six looks without one (what was unread is published
    # again from the journal and the store); never while it holds no record; 0: never
    # (router/bus/recycler.py).
    embedded_broker_max_mb: int = Field(default=256, ge=0)
    # How often the embedded broker's memory is looked at (every second while it waits).
    embedded_broker_check_seconds: float = Field(default=5.0, gt=0)
    # Set by `supportrouter run` for its worker processes: the servers above are its embedded
    # broker (short group timeouts, no idempotent producer), not a Kafka cluster.
    kafka_is_embedded: bool = False
    # `supportrouter run` on the embedded broker: "auto" puts the gateway, the sender and the
    # pipeline stages in processes of their own, one dispatcher per two cores, and as many
    # classifiers where that stage runs (`classify_in`; at least one each; on one core,
    # everything in one process); a number N plans as if there were N cores; "1" runs
    # everything in one process. On a Kafka cluster "auto" is one
    # process (there each service is run and scaled on its own); a number N starts the workers
    # there too.
    processes: str = Field(default="auto", pattern=r"^(auto|[1-9][0-9]?)$")
    # Where a message is classified. "gateway": as the gateway takes it, its lane urgent when the
    # pre-screen or the classification says it may be critical; the dispatcher reads the inbound
    # lanes (one Kafka hop fewer) and also support.classified(.urgent), so switching loses
    # nothing. "classifier": in the classifier stage between them, scaled on its own. "auto":
    # the gateway on the embedded broker, the stage on a Kafka cluster.
    classify_in: Literal["auto", "gateway", "classifier"] = "auto"
    # Classifier worker processes when `processes` is above 1 and the classifier stage runs
    # (unset: one per two cores).
    classifier_processes: int | None = Field(default=None, ge=1, le=64)
    # Dispatcher worker processes when `processes` is above 1 (unset: one per two cores).
    dispatcher_processes: int | None = Field(default=None, ge=1, le=64)
    # The classifier's modules compiled by `make native` (mypyc) load when they match their
    # sources; false runs the sources. Read once, when router.classify is first imported
    # (router/classify/native.py); a value that is not a boolean stops the start here.
    native: bool = True
    topics: Topics = Topics()
    # Partitions per topic when the router creates them.
    partitions: int = 3
    # Replicas per topic when the router creates them: 1 on one broker, 3 on a production
    # cluster (with min.insync.replicas=2 on the brokers, so acks=all means two copies).
    replication_factor: int = 1
    # Consumer groups are named <prefix>-<service> (supportrouter-dispatcher, ...).
    consumer_group_prefix: str = "supportrouter"
    # A new consumer group waits half this long before its first assignment on the embedded
    # broker, so the embedded default uses a short one; Kafka itself refuses less than 6000.
    consumer_session_timeout_ms: int | None = None
    # How long the broker may hold a consumer's fetch that found no records. Apache Kafka
    # answers as soon as records arrive, so its default (500) adds no latency there. The
    # embedded broker answers only when the wait is over, so there every hop (gateway →
    # classifier → dispatcher → sender) waited up to that long: unset, 50 on the embedded
    # broker (a shorter wait costs more CPU while idle: every consumer asks again sooner).
    consumer_fetch_wait_ms: int | None = Field(default=None, ge=1, le=60_000)
    # Seconds a publish waits for Kafka's acknowledgement before it fails (the channels then
    # answer 503 or 451, so the sender retries) instead of blocking while the broker is away.
    publish_timeout: float = 5.0

    channels: list[str] = Field(
        default_factory=lambda: list(_registry()),
        description="channels this router runs (default: every one in channels.REGISTRY)",
    )
    # The operators' files.
    config_dir: Path = Path("config")
    # How often the operators' files (config/*.yaml, voice.yaml too) are looked at; 0: on SIGHUP only.
    config_poll_seconds: float = 2.0
    # The seeded supervisor `admin` (unset: generated and printed at first start).
    admin_password: SecretStr | None = None
    log_format: str = Field(default="auto", description="auto | json | console")
    # debug | info | warning | error.
    log_level: str = "info"

    # Larger request bodies get 413.
    max_body_bytes: int = 64 * 1024
    # Longer chat messages are refused with an error frame.
    max_chat_text_chars: int = 4000
    # How long an agent's login token lasts.
    agent_token_ttl_seconds: int = 12 * 3600
    # Logins: failures free per username (and per client address) before each further one
    # doubles the wait, answered 429 with Retry-After; the wait never exceeds the cap.
    login_free_failures: int = Field(default=5, ge=1)
    # Wrong passwords per client address before the backoff starts.
    login_free_failures_per_address: int = Field(default=20, ge=1)
    # The longest wait after wrong passwords.
    login_backoff_max_seconds: int = Field(default=900, ge=1)
    # A chat session not renewed (the widget renews it while open) for this long is refused.
    chat_session_idle_seconds: int = Field(default=24 * 3600, ge=1)
    # How often an open socket checks that its token is still valid (it also closes at expiry).
    socket_auth_check_seconds: float = Field(default=30.0, gt=0)

    # The intake journal (router/store/journal.py): "auto" keeps one when the broker is the
    # embedded memory one, whose acknowledgement alone does not survive a crash.
    intake_journal: Literal["auto", "on", "off"] = "auto"
    journal_path: Path | None = Field(
        default=None, description="unset: beside the SQLite database, or under var/journal/"
    )
    # full survives a power cut, normal only a killed process (cheaper).
    journal_synchronous: Literal["full", "normal"] = "full"
    # On SIGTERM/Ctrl-C, how long accepted messages may take to reach the store before the
    # router stops anyway (they stay in the journal for the next start).
    drain_seconds: float = 10.0

    # The wallet's backend that takes protective actions (freeze, confirm, lift; docs/cases.md):
    # unset, no request is sent and the cases API says "not configured".
    protect_url: str | None = None
    # Signs each protective-action request (HMAC-SHA256 in X-Supportrouter-Signature).
    protect_secret: SecretStr | None = None
    # How often the protective actions' outbox is looked at for requests due (retries).
    protect_poll_seconds: float = Field(default=1.0, gt=0)

    # The channels' own sections.
    twilio: TwilioSettings = Field(default_factory=TwilioSettings)
    telegram: TelegramSettings = Field(default_factory=TelegramSettings)
    email: EmailSettings = Field(default_factory=EmailSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sections = _SectionsFromEnvironment(settings_cls)
        return init_settings, env_settings, sections, dotenv_settings, file_secret_settings

    @field_validator("database_url")
    @classmethod
    def _store_url(cls, value: str) -> str:
        return store_url(value)

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

    @property
    def classifier_stage(self) -> bool:
        """Whether the classifier stage runs (else the gateway classifies): classify_in."""
        if self.classify_in == "auto":
            return not (self.embedded or self.kafka_is_embedded)
        return self.classify_in == "classifier"

    @property
    def journaled(self) -> bool:
        return self.intake_journal == "on" or (self.intake_journal == "auto" and self.embedded)

    def journal_file(self) -> Path:
        """Where the intake journal lives: one per database, so two routers never share one."""
        if self.journal_path is not None:
            return self.journal_path
        url = make_url(self.database_url)
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            database = Path(url.database)
            return database.with_name(database.name + ".journal")
        digest = hashlib.sha256(self.database_url.encode()).hexdigest()[:16]
        return Path("var/journal") / f"{digest}.sqlite"
