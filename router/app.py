"""The supervisor: builds the services a role needs, starts them in order, stops them in reverse.

Order: broker → store → intake journal → producer → consumers → journal relay → drain → gateway
(intake last, so nothing is accepted before it can be carried); stop is the reverse, so intake
stops first, the drain then waits for what was accepted to reach the store, and the broker stops last.
"""

from __future__ import annotations

import asyncio
import importlib
import secrets
import signal
from dataclasses import dataclass, field
from typing import Any

import structlog

from channels import REGISTRY
from channels.base import ChannelContext, ChannelParts
from router.bus.embedded import EmbeddedBroker
from router.bus.kafka import KafkaBus
from router.bus.recycler import BrokerRecycler
from router.classify import NATIVE
from router.core.settings import Settings
from router.policy.rules import Rules
from router.policy.watcher import ConfigWatcher
from router.services.api import AgentApi
from router.services.classifier import ClassifierService
from router.services.dispatcher import DispatcherService
from router.services.drain import Drain
from router.services.gateway import Gateway
from router.services.groups import consumer_groups
from router.services.intake import Intake
from router.services.journal_relay import JournalRelay
from router.services.protect import ProtectService
from router.services.reply_requeue import ReplyRequeue
from router.services.sender import SenderService
from router.services.status_http import StatusServer
from router.services.workers import Plan, WorkerProcesses
from router.store.conversations import ConversationStore
from router.store.database import LOOKUP_PAGE_CACHE_MB, PAGE_CACHE_MB
from router.store.journal import IntakeJournal
from router.store.migrate import upgrade as upgrade_schema

log = structlog.get_logger("router.app")
ROLES = ("all", "gateway", "classifier", "dispatcher", "sender")
# The port each service run alone serves /metrics, /healthz and /readyz on (Settings.status_port).
STATUS_PORTS = {"classifier": 8081, "dispatcher": 8082, "sender": 8083}
WORKERS_STARTING = "the router's other worker processes are still starting"


@dataclass
class Router:
    settings: Settings
    role: str = "all"
    rules: Rules | None = None
    broker: EmbeddedBroker | None = None
    store: ConversationStore | None = None
    bus: KafkaBus | None = None
    gateway: Gateway | None = None
    intake: Intake | None = None
    dispatcher: DispatcherService | None = None
    watcher: ConfigWatcher | None = None
    journal: IntakeJournal | None = None
    relay: JournalRelay | None = None
    requeue: ReplyRequeue | None = None
    status: StatusServer | None = None
    clock: Any = (
        None  # router.services.sla.Clock; None: the system clock (tests pass a ManualClock)
    )
    admin_password: str | None = None  # set only when generated at this start, to be printed
    plan: Plan | None = None  # role "all" with a plan: the stages run as worker processes
    workers: WorkerProcesses | None = None
    # `run gateway --held`: the supervisor's gateway worker, not ready until the supervisor says
    # (SIGUSR2) that every worker is up (router/services/workers.py).
    held: bool = False
    _started: list[Any] = field(default_factory=list)

    async def start(self) -> None:
        if self._started:
            raise RuntimeError("Router already started")
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}; one of {ROLES}")
        s = self.settings
        if self.rules is None:  # a caller may hand over rules already built from s.config_dir
            self.rules = Rules(s.config_dir)
        log.info("classifier.loaded", role=self.role, version=self.rules.version, build=NATIVE)
        try:
            await self._start_all(s)
            if self.broker is not None and s.embedded_broker_max_mb:
                await self._up(
                    BrokerRecycler(
                        self.broker,
                        consumer_groups(s),
                        s.topics.dlq,
                        max_mb=s.embedded_broker_max_mb,
                        every=s.embedded_broker_check_seconds,
                        patience=6 * s.embedded_broker_check_seconds,
                    )
                )
        except BaseException:
            await self.stop()
            raise

    async def _start_all(self, s: Settings) -> None:
        assert self.rules is not None  # start() built them
        if s.embedded:
            if self.role != "all":
                raise RuntimeError(
                    "the embedded broker runs only with `supportrouter run`; "
                    "set SUPPORTROUTER_KAFKA_BOOTSTRAP_SERVERS to run one service alone"
                )
            self.broker = EmbeddedBroker(
                port=s.embedded_kafka_port,
                topics=s.topics.all(),
                partitions=s.partitions,
                on_restart=self._broker_restarted,
            )
            await self._up(self.broker)
        if self.role == "classifier" and not s.classifier_stage:
            raise RuntimeError(
                f"SUPPORTROUTER_CLASSIFY_IN={s.classify_in}: the gateway classifies; "
                "set it to `classifier` to run the classifier stage"
            )
        bootstrap = self.broker.bootstrap_servers if self.broker else s.kafka_bootstrap_servers
        assert bootstrap is not None  # no embedded broker: the settings name the servers
        if self.role != "classifier":
            # Everything in one process (`supportrouter run`) upgrades the schema itself; a
            # service run alone waits for `supportrouter db upgrade` (router/store/revisions.py).
            if self.role == "all":
                await upgrade_schema(s.database_url)
            wait = 0 if self.role == "all" else s.schema_wait_seconds
            # A worker with no HTTP to answer makes its SQLite calls on its loop (inline_sqlite).
            self.store = ConversationStore(
                s.database_url,
                schema_wait_seconds=wait,
                sqlite_on_loop=self.role in ("dispatcher", "sender"),
                # The gateway mostly looks rows up; the store's writers keep the larger cache.
                page_cache_mb=LOOKUP_PAGE_CACHE_MB if self.role == "gateway" else PAGE_CACHE_MB,
            )
            await self._up(self.store)
            await self._seed_admin()
            if self.broker is not None:  # its owner puts back the replies it loses
                self.requeue = ReplyRequeue(self.store)
                await self._up(self.requeue)
                await self.requeue.started_empty()
        if self.plan is not None and self.role == "all":
            self.workers = WorkerProcesses(
                s, self.plan, bootstrap, embedded=self.broker is not None
            )
            await self._up(self.workers)
            return
        wants = {self.role} if self.role != "all" else set(ROLES)
        if "gateway" in wants and s.journaled:
            self.journal = IntakeJournal(s.journal_file(), synchronous=s.journal_synchronous)
            await self._up(self.journal)
        self.bus = KafkaBus(s, bootstrap, embedded=self.broker is not None or s.kafka_is_embedded)
        await self._up(self.bus)
        self.watcher = ConfigWatcher(self.rules, s.config_poll_seconds)
        await self._up(self.watcher)
        consumers: list[Any] = []
        if "classifier" in wants and s.classifier_stage:
            consumers.append(ClassifierService(self.bus, self.rules))
        if "dispatcher" in wants:
            assert self.store is not None  # every role but the classifier has a store
            self.dispatcher = DispatcherService(
                self.bus,
                self.store,
                self.rules,
                clock=self.clock,
                classifies=not s.classifier_stage,
            )
            consumers.append(self.dispatcher)
            protect = ProtectService(s, self.store, self.rules, self.dispatcher.relay)
            self.dispatcher.cases.on_queued = protect.wake
            consumers.append(protect)
        self.intake = intake = Intake(
            self.bus, self.rules, self.journal, classifies=not s.classifier_stage
        )
        channels = (
            []  # the classifier: no store and no channels
            if self.store is None
            else self._build_channels(ChannelContext(s, self.store, self.bus, intake.publish))
        )
        if "sender" in wants:
            assert self.store is not None
            senders = {name: sender for parts in channels for name, sender in parts.senders.items()}
            consumers.append(SenderService(self.bus, self.store, senders=senders))
        # Together: each consumer group's first join waits on the broker, so one at a time adds up.
        results = await asyncio.gather(*(self._up(c) for c in consumers), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        if self.role in STATUS_PORTS:
            port = s.status_port if s.status_port is not None else STATUS_PORTS[self.role]
            self.status = StatusServer(self.role, s.http_host, port, self.bus, self.store)
            await self._up(self.status)
        if self.journal is not None:
            assert self.store is not None
            self.relay = JournalRelay(self.journal, self.store, self.bus)
            await self._up(self.relay)
        if "gateway" in wants:
            assert self.store is not None
            # Just before the gateway: it stops (waits for the store) right after intake closed,
            # while the pipeline still runs.
            await self._up(Drain(intake, self.store, seconds=s.drain_seconds))
            adapters = [parts.adapter for parts in channels if parts.adapter is not None]
            api = AgentApi(s, self.store, self.bus, self.rules, clock=self.clock)
            self.gateway = Gateway(s, self.store, self.bus, api, adapters)
            if self.held:
                self.gateway.waiting_for = WORKERS_STARTING
            await self._up(self.gateway)

    def _build_channels(self, context: ChannelContext) -> list[ChannelParts]:
        if self.role == "classifier":
            return []
        built = []
        for name in self.settings.channels:
            module, _, function = REGISTRY[name].partition(":")
            built.append(getattr(importlib.import_module(module), function)(context))
        return built

    async def _up(self, service: Any) -> None:
        await service.start()
        self._started.append(service)

    async def stop(self, timeout_per_service: float = 15.0) -> None:
        # The drain's stop waits up to drain_seconds for accepted messages to reach the store.
        timeout = max(timeout_per_service, self.settings.drain_seconds + 5)
        while self._started:
            service = self._started.pop()
            try:
                await asyncio.wait_for(service.stop(), timeout)
            except (
                Exception,
                TimeoutError,
            ) as exc:  # keep stopping the rest: never orphan the broker
                log.error("service.stop_failed", service=type(service).__name__, error=repr(exc))

    def reload(self) -> None:
        """Load config/ again (SIGHUP); a bad file is refused and the rules in force stay."""
        if self.watcher is not None:
            self.watcher.request()
        if self.workers is not None:
            for role in ("classifier", "dispatcher", "sender", "gateway"):
                self.workers.signal(role, signal.SIGHUP)

    def workers_up(self) -> None:
        """SIGUSR2 from the supervisor: every worker is up, so its gateway is ready."""
        self.held = False
        if self.gateway is not None:
            self.gateway.waiting_for = None

    def broker_lost(self) -> None:
        """SIGUSR1 from the supervisor: its embedded broker came back empty."""
        asyncio.get_running_loop().create_task(self._broker_restarted())

    async def __aenter__(self) -> Router:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _broker_restarted(self) -> None:
        """The embedded broker died and came back empty: what it held goes out again, the
        accepted messages from the journal and the replies from the store."""
        if self.workers is not None:  # the journal and its relay live in the gateway worker
            self.workers.signal("gateway", signal.SIGUSR1)
        if self.relay is not None:
            self.relay.broker_lost_records()
        # The broker's owner (this process, or the supervisor) puts the replies back: it has
        # its store before any worker is up to be told.
        if self.requeue is not None:
            await self.requeue.broker_restarted()

    async def _seed_admin(self) -> None:
        assert self.store is not None
        configured = self.settings.admin_password
        if configured is not None:
            await self.store.set_password("admin", configured.get_secret_value())
        elif not await self.store.has_password("admin"):
            generated = secrets.token_urlsafe(12)
            # Printed only by the service whose password was stored, when several start at once.
            if await self.store.add_password("admin", generated):
                self.admin_password = generated
