"""A service run alone serves /metrics, /healthz and /readyz on a port of its own, with its
consumer lag and (the dispatcher) queue depth; the README lists every metric."""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

import aiohttp
import prometheus_client

from router.bus.embedded import free_port
from router.bus.kafka import KafkaBus
from router.core.envelope import Channel, Lane
from router.observability.metrics import RECEIVED, labelled  # (registers every metric)
from tests.conftest import migrated_sqlite
from tests.test_process import _env, _start

ROOT = Path(__file__).resolve().parent.parent


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url) as response:
        return response.status, await response.text()


async def _until(check, what: str, seconds: float = 60.0):
    """Poll `check` (async, returns a value or None) until it gives a value."""
    async with asyncio.timeout(seconds):
        while True:
            found = await check()
            if found is not None:
                return found
            await asyncio.sleep(0.3)
    raise AssertionError(what)


async def test_a_dispatcher_alone_shows_its_lag_and_queue_depth(tmp_path, broker):
    port = free_port()
    env = _env(tmp_path, **broker.env(), SUPPORTROUTER_STATUS_PORT=str(port))
    await migrated_sqlite(tmp_path / "store.db")  # the database _env names, at the latest schema
    process = await _start(env, "dispatcher", stderr=asyncio.subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:

            async def ready():
                if process.returncode is not None:
                    raise AssertionError(f"dispatcher exited with {process.returncode}")
                try:
                    status, body = await _get(session, f"{base}/readyz")
                except aiohttp.ClientError:
                    return None
                return body if status == 200 else None

            assert '"role": "dispatcher"' in await _until(ready, "dispatcher never ready")
            status, health = await _get(session, f"{base}/healthz")
            assert status == 200 and '"ok"' in health
            # A record it cannot use still moves its partition on (to the DLQ): lag is measured.
            settings = broker.settings()
            async with KafkaBus(
                settings, broker.bootstrap_servers, embedded=broker.embedded
            ) as bus:
                await bus.publish(bus.topics.classified, b"not an envelope", key=b"k1")
            group = f"{settings.consumer_group_prefix}-dispatcher"
            labels = f'group="{group}",partition="[0-9]+",topic="{settings.topics.classified}"'
            lag_line = re.compile(rf"^supportrouter_consumer_lag\{{{labels}\}} (\S+)$", re.M)

            async def measured():
                _, text = await _get(session, f"{base}/metrics")
                queues_measured = 'supportrouter_queue_waiting{queue="fraud"}' in text
                return text if lag_line.search(text) and queues_measured else None

            metrics = await _until(measured, "no consumer lag for support.classified")
            assert float(lag_line.search(metrics).group(1)) == 0.0  # handled (dead-lettered)
            assert re.search(
                r'^supportrouter_stage_seconds_count\{stage="dispatch"\} [1-9]', metrics, re.M
            )
            # Every queue of config/routing.yaml has its depth and oldest wait, 0 when empty.
            for queue in ("fraud", "payments", "triage"):
                assert f'supportrouter_queue_waiting{{queue="{queue}"}} 0.0' in metrics
                assert f'supportrouter_queue_oldest_wait_seconds{{queue="{queue}"}} 0.0' in metrics
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            await process.wait()


def test_the_readme_lists_every_metric():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    names = {
        metric.name
        for metric in prometheus_client.REGISTRY.collect()
        if metric.name.startswith("supportrouter_")
    }
    assert len(names) > 20
    missing = sorted(name for name in names if f"`{name}" not in readme)
    assert not missing, f"README.md does not list {missing}"


def test_the_grafana_dashboard_asks_only_for_metrics_we_serve():
    import json

    dashboard = json.loads((ROOT / "deploy/grafana/supportrouter.json").read_text(encoding="utf-8"))
    served = set()
    for metric in prometheus_client.REGISTRY.collect():
        for sample in metric.samples:
            served.add(sample.name)
        served.add(metric.name)
        if metric.type == "counter":
            served.add(f"{metric.name}_total")
        if metric.type == "histogram":
            served |= {f"{metric.name}_{part}" for part in ("bucket", "sum", "count")}
    asked = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            asked |= set(re.findall(r"\bsupportrouter_[a-z_]+", target["expr"]))
    assert asked, "no query names a metric"
    unknown = sorted(asked - served)
    assert not unknown, f"the dashboard asks for metrics nobody serves: {unknown}"
    # The views: queues, lag, stage latency, SLA breaches, sends by outcome.
    for needed in (
        "supportrouter_queue_waiting",
        "supportrouter_consumer_lag",
        "supportrouter_stage_seconds_bucket",
        "supportrouter_sla_breaches_total",
        "supportrouter_outbound_delivered_total",
    ):
        assert needed in asked


def test_a_kept_labelled_child_counts_where_labels_would_put_it():
    """The counters every message moves go through `labelled` (a child kept, not looked up
    again): the same sample as `labels` by name, for an enum value and its text alike."""

    def count() -> float:
        value = prometheus_client.REGISTRY.get_sample_value(
            "supportrouter_messages_received_total", {"channel": "telegram", "lane": "urgent"}
        )
        return value or 0.0

    before = count()
    labelled(RECEIVED, Channel.TELEGRAM, Lane.URGENT).inc()
    labelled(RECEIVED, "telegram", "urgent").inc()
    RECEIVED.labels(channel="telegram", lane="urgent").inc()
    assert count() == before + 3
    assert labelled(RECEIVED, Channel.TELEGRAM, Lane.URGENT) is RECEIVED.labels(
        channel="telegram", lane="urgent"
    )
