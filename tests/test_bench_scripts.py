"""The README's measuring commands run and print what the README says they print."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import sqlite3
import subprocess
import sys
from types import ModuleType

import pytest

from router.core.envelope import Channel
from router.store.conversations import ConversationStore
from tests.conftest import CONFIG_DIR, migrated_sqlite
from tests.test_batch_sender import conversation, replies

ROOT = CONFIG_DIR.parent


def from_bench(module: str) -> ModuleType:
    """A module of bench/, which its scripts import by name: bench/ is on the path while it loads."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        return importlib.import_module(module)
    finally:
        sys.path.remove(str(ROOT / "bench"))


def bench_output(script: str, *args: str) -> str:
    """What a script of bench/ prints, run as the README runs it (it must exit 0)."""
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout


def test_crossval_holds_out_every_example_once_and_reports_the_figures():
    crossval = from_bench("classifier_crossval")
    folds_of, without = crossval.folds_of, crossval.without
    from router.operator_files.config import load_config

    config = load_config(CONFIG_DIR).classifier
    folds = folds_of(config, 4, seed=1)
    held = sorted(t for fold in folds for texts in fold.values() for t in texts)
    assert held == sorted(t for c in config.categories.values() for t in c.examples.all())
    trimmed = without(config, folds[0])
    left = {t for c in trimmed.categories.values() for t in c.examples.all()}
    assert left.isdisjoint(t for texts in folds[0].values() for t in texts)

    report = json.loads(bench_output("classifier_crossval.py", "--folds", "2", "--json"))
    assert report["rows"] == len(held)
    assert 0 < report["macro_f1"] <= 1 and 0 < report["unauthorized_recall"] <= 1


def test_crossval_of_the_shipped_set_holds_out_each_row_from_the_model_that_scores_it():
    from collections import Counter

    from router.classify import examples
    from router.classify.textprep import for_model, prepare
    from router.operator_files.config import load_config

    crossval = from_bench("classifier_crossval")
    config = load_config(CONFIG_DIR).classifier
    name = config.model.extra_examples
    whole = examples.shipped(name)
    scored: list[str] = []
    for _classifier, rows in crossval.shipped_folds(config, 2, seed=1):
        taught = examples.shipped(name)  # what the classifier of this fold learned from
        held = [for_model(prepare(text)) for text, _ in rows]
        assert Counter(taught) + Counter(zip(held, (c for _, c in rows), strict=True)) == Counter(
            whole
        )
        scored += held
    assert examples.shipped(name) == whole  # the whole set again once the folds are done
    assert Counter(scored) == Counter(text for text, _ in whole)

    report = json.loads(
        bench_output("classifier_crossval.py", "--shipped", "--folds", "2", "--json")
    )
    assert report["rows"] == len(whole)
    assert 0 < report["macro_f1"] <= 1 and 0 < report["unauthorized_recall"] <= 1


def test_classifier_throughput_reports_every_stage():
    result = json.loads(
        bench_output("classifier_throughput.py", "--messages", "300", "--rounds", "1", "--json")
    )
    for key in ("gateway", "classify_only", "classifier_record", "pipeline"):
        assert result[f"{key}_messages_per_second"] > 0


def test_intake_journal_bench_reports_the_ceiling_and_the_journal_in_the_same_run():
    result = json.loads(bench_output("intake_journal.py", "--messages", "300", "--json"))
    assert set(result) == {
        "journal alone (full)",
        "journal alone (normal)",
        "intake, no journal (ceiling)",
        "intake + full",
        "intake + normal",
    }
    assert all(row["rate"] > 0 for row in result.values())
    assert result["intake + full"]["per_commit"] >= 1


BENCH_KEYS = (
    "throughput_msgs_per_s",
    "accept_rps",
    "p50_ms_at_500",
    "p99_ms_at_500",
    "critical_behind_backlog_s",
    "bare_http_msgs_per_s",
    "bare_gateway_msgs_per_s",
)


def test_supportrouter_bench_quick_drives_the_router_over_http_and_writes_every_figure(tmp_path):
    out = tmp_path / "latest.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-m", "router.cli", "bench", "--quick", "--out", str(out)]
        + ["--soak-seconds", "3", "--soak-rate", "20", "--scale-out", "1,2"]
        + ["--latency-rates", "50", "--keep", str(tmp_path / "work")]
        + ["--setting", "consumer_fetch_wait_ms=40", "--repeat", "2"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env=env,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    result = json.loads(out.read_text())
    for key in BENCH_KEYS:
        value = result[key]
        assert isinstance(value, int | float) and value > 0, (key, value)
    # every message of the quick bursts reached the store: nothing refused on the way
    assert result["burst_not_ok"] == 0 and result["steady_not_ok"] == 0
    assert result["peak_rss_mb"]["router"] > 0 and result["peak_rss_mb"]["router.broker"] > 0
    assert result["database"] == "sqlite" and result["broker"].startswith("tansu")
    # CPU per message by process, in the burst and at a steady 500/s: each worker's own
    for cpu in (result["cpu_ms_per_msg"], result["cpu_ms_per_msg_at_500"]):
        assert {"router.gateway", "router.dispatcher", "router.sender"} <= cpu.keys(), cpu
        assert "router.classifier" not in cpu, cpu  # the gateway classifies here
        assert cpu["router.gateway"] > 0 and cpu["router.dispatcher"] > 0, cpu
    assert "CPU per message at a steady 500/s" in run.stdout
    # the 200 itself, sent → answered: what a provider waits for, apart from the pipeline
    assert 0 < result["answer_p50_ms_at_500"] <= result["answer_p99_ms_at_500"]
    assert "the 200 itself (sent → answered) at 500/s" in run.stdout
    assert all(result[k] for k in ("date", "machine", "command"))
    assert result["settings"] == {"consumer_fetch_wait_ms": "40"}
    # --repeat 2: both ceilings and the burst twice; the figures are the median run's
    runs = result["burst_runs"]
    assert len(runs) == 2 and all(run["burst_not_ok"] == 0 for run in runs), runs
    assert result["throughput_msgs_per_s"] == min(r["throughput_msgs_per_s"] for r in runs)
    for mode in ("http", "gateway"):
        assert result[f"bare_{mode}_msgs_per_s"] == min(result[f"bare_{mode}_runs"])
    # each burst from customers of its own: every message opened a conversation
    burst = result["sizes"]["burst"]
    with contextlib.closing(sqlite3.connect(tmp_path / "work" / "bench.db")) as db:
        [(customers,)] = db.execute(
            "SELECT count(DISTINCT customer_address) FROM conversations"
            " WHERE customer_address LIKE '+19991%'"
        ).fetchall()
        # a steady phase begins once the bursts' acknowledgements went through the sender
        [(last_burst_reply, first_steady)] = db.execute(
            "SELECT (SELECT max(created_at) FROM outbox WHERE recipient LIKE '+19991%'),"
            " (SELECT min(created_at) FROM messages"
            "  WHERE direction = 'in' AND author LIKE '+19992%')"
        ).fetchall()
    assert customers == 2 * burst
    assert last_burst_reply is not None and last_burst_reply < first_steady
    assert isinstance(result["quiet_before_500_s"], float), result["quiet_before_500_s"]
    assert "router end to end" in run.stdout and str(out) in run.stdout
    soak = result["soak"]  # each process's memory after the first fifth and at the end
    assert soak["not_ok"] == 0 and (soak["seconds"], soak["rate"]) == (3, 20)
    assert soak["rss_mb_each_minute"] == []  # three seconds: no whole minute
    for sizes in (soak["rss_mb_after_first_fifth"], soak["rss_mb_at_end"]):
        assert sizes["router"] > 0 and sizes["router.broker"] > 0
    assert "RSS over 3 s at 20/s: router" in run.stdout
    # the scale-out: the burst again with 1 + 1, then 2 + 2 pipeline processes, all stored
    rows = result["scale_out"]  # on the embedded broker the gateway classifies
    assert [(r["classifiers"], r["dispatchers"]) for r in rows] == [(0, 1), (0, 2)]
    for row in rows:
        assert row["burst_not_ok"] == 0 and row["partitions"] >= 2, row
        assert row["throughput_msgs_per_s"] > 0 and row["peak_rss_mb_total"] > 0, row
    assert "scale-out: 0 classifier + 2 dispatcher processes" in run.stdout
    # the steady phase again at 50/s: every message answered and stored, p50 ≤ p99
    [low] = result["latency_by_rate"]
    assert low["rate"] == 50 and low["not_ok"] == 0, low
    assert 0 <= low["p50_ms"] <= low["p99_ms"], low
    assert 0 < low["answer_p50_ms"] <= low["answer_p99_ms"], low
    assert "accepted → stored at a steady 50/s" in run.stdout
    assert low["cpu_ms_per_msg"]["router.dispatcher"] > 0, low
    # where that time went, hop by hop, from the stages' log lines: every message of the phase
    steady_n = 50 * result["sizes"]["steady_seconds"]
    for row in (low["hops"], result["hops_at_500"]):
        assert list(row) == ["gateway → dispatcher", "dispatcher → sender"], row
        assert row["gateway → dispatcher"]["p50_ms"] > 0, row
    assert low["hops"]["gateway → dispatcher"]["n"] == steady_n, low
    assert "  gateway → dispatcher" in run.stdout
    # --keep: the routers' logs stay, each message's stages in them (what bench/stages.py reads)
    logs = sorted((tmp_path / "work").glob("router-*.log"))
    assert logs and any('"message.received"' in log.read_text() for log in logs), logs


@pytest.mark.kafka
def test_the_bench_on_apache_kafka_runs_the_router_and_the_bare_gateway_there(
    tmp_path, shared_kafka
):
    """`--kafka`: the router's workers and the bare gateway on the cluster, with topics of their
    own; the Kafka server's CPU and memory are measured beside the router's processes."""
    out = tmp_path / "latest.json"
    run = subprocess.run(
        [sys.executable, "bench/throughput.py", "--quick", "--out", str(out)]
        + ["--kafka", shared_kafka, "--keep", str(tmp_path / "work")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["broker"] == f"apache kafka ({shared_kafka})"
    assert result["burst_not_ok"] == 0 and result["steady_not_ok"] == 0
    for key in BENCH_KEYS:
        assert result[key] > 0, (key, result[key])
    peaks = result["peak_rss_mb"]
    assert "router.broker" not in peaks and "bare_gateway.broker" not in peaks, peaks
    assert peaks["kafka"] > 0, peaks  # the server on this machine, found by its port
    assert {"router.gateway", "router.classifier", "router.dispatcher", "router.sender"} <= set(
        peaks
    ), peaks
    assert result["cpu_ms_per_msg"]["kafka"] > 0, result["cpu_ms_per_msg"]
    # the router's topics and groups are the run's own, on the cluster it was given
    from aiokafka.admin import AIOKafkaAdminClient

    async def topics() -> list[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=shared_kafka)
        await admin.start()
        try:
            return await admin.list_topics()
        finally:
            await admin.close()

    made = [t for t in asyncio.run(topics()) if t.startswith("bench.")]
    assert any(t.endswith(".support.inbound.standard") for t in made), made
    assert any(t.endswith(".bare") for t in made), made


def test_a_hop_from_the_gateway_starts_when_it_took_the_request_not_when_it_logged():
    """The classifier can fetch a record before the broker's answer to the produce reaches a
    busy gateway: the gateway's line is then written after the classifier's (a clean CI run
    measured a p50 of -5.5 ms that way). The hop starts at the line's `received_at`."""
    hops = from_bench("stages").hops

    def line(event: str, at: str, **more: str) -> str:
        return json.dumps({"event": event, "trace_id": "t1", "timestamp": at, **more})

    lines = [
        line("message.classified", "2026-12-03T12:00:00.010Z"),
        line(
            "message.received",
            "2026-12-03T12:00:00.030Z",
            received_at="2026-12-03T12:00:00.004+00:00",
        ),
        line("conversation.queued", "2026-12-03T12:00:00.050Z"),
    ]
    found = hops(lines)
    assert found["gateway → classifier"] == {"n": 1, "p50_ms": 6.0, "p99_ms": 6.0}
    assert found["classifier → dispatcher"] == {"n": 1, "p50_ms": 40.0, "p99_ms": 40.0}


def test_without_a_classifier_stage_the_hop_is_gateway_to_dispatcher():
    """The gateway classifies (SUPPORTROUTER_CLASSIFY_IN): a message passes three stages."""
    hops = from_bench("stages").hops
    lines = [
        json.dumps({"event": event, "trace_id": trace, "timestamp": at})
        for trace, event, at in [
            ("t1", "message.received", "2026-12-03T12:00:00.000Z"),
            ("t1", "conversation.queued", "2026-12-03T12:00:00.020Z"),
            ("t1", "reply.sandboxed", "2026-12-03T12:00:00.025Z"),
            ("t2", "message.received", "2026-12-03T12:00:01.000Z"),
            ("t2", "conversation.updated", "2026-12-03T12:00:01.030Z"),
        ]
    ]
    assert hops(lines) == {
        "gateway → dispatcher": {"n": 2, "p50_ms": 25.0, "p99_ms": 20.0},
        "dispatcher → sender": {"n": 1, "p50_ms": 5.0, "p99_ms": 5.0},
    }


async def test_store_statements_counts_what_the_router_asks_its_database(database_url):
    """On both databases (--database-url): PostgreSQL's statements are its dialect's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPPORTROUTER_")}
    command = [sys.executable, str(ROOT / "bench" / "store_statements.py"), "--messages", "30"]
    out = await asyncio.to_thread(
        subprocess.run,
        [*command, "--database-url", database_url],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
        env=env,
    )
    lines = [line for line in out.stdout.splitlines() if "statements," in line]
    assert lines, out.stdout[-2000:]
    per_message = float(lines[0].split(",")[1].split()[0])
    assert per_message > 0  # every message is stored by some statement
    assert "INSERT INTO messages" in out.stdout
    if database_url.startswith("postgresql"):
        assert "= ANY($" in out.stdout  # asyncpg's numbered parameters: it ran there
    else:
        assert "= ANY($" not in out.stdout


def test_dispatcher_rounds_reports_each_chunk_size_and_each_round_on_a_full_store():
    out = bench_output(
        "dispatcher_rounds.py", "--sizes", "1,5", "--chunks", "4", "--waiting", "300"
    )
    lines = out.splitlines()
    chunks = {
        int(line.split()[0]): line.split() for line in lines if line.split()[:1] in (["1"], ["5"])
    }
    assert set(chunks) == {1, 5}, out
    assert all(float(words[1]) > 0 and float(words[3]) > 0 for words in chunks.values()), out
    # the same customers' later messages, into their open conversations: a CPU and a wall time
    assert all(float(words[7]) > 0 and float(words[9]) > 0 for words in chunks.values()), out
    waiting = next(line for line in lines if line.startswith("rounds with"))
    assert int(waiting.split()[2].replace(",", "")) >= 300, out  # routed, none offered
    after = lines[lines.index(waiting) + 1 :]
    rounds = {line[:16].strip(): line[16:].split() for line in after if line.strip()}
    assert set(rounds) == {"timers' tick", "queue gauges", "relay"}, out
    assert all(len(times) == 5 for times in rounds.values()), out


@pytest.mark.parametrize("value", ["x", "1,,2", "0", "1001", ""])
def test_dispatcher_rounds_refuses_a_wrong_list_of_sizes(value):
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "dispatcher_rounds.py"), "--sizes", value],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2, run.stderr
    assert "expected chunk sizes from 1 to 1,000" in run.stderr


SCALE_OUT_REFUSED = "--scale-out: expected counts from 1 to 64 like 1,2,4"
RATES_REFUSED = "--latency-rates: expected rates from 1 to 5,000 like 100,200"
SETTING_REFUSED = "--setting: expected NAME=VALUE with NAME a router setting"
SIZE_REFUSED = "expected a whole number from 1 to 10,000,000"


@pytest.mark.parametrize(
    "option, value, reason",
    [("--scale-out", value, SCALE_OUT_REFUSED) for value in ("x", "1,,2", "0", "1,65", "")]
    + [("--latency-rates", value, RATES_REFUSED) for value in ("fast", "100,", "0", "5001")]
    + [("--setting", value, SETTING_REFUSED) for value in ("fetch_wait=1", "processes", "=1")]
    # A size that is not a whole number above zero: before, a negative burst reached wrk.
    + [(option, "-5", f"{option}: {SIZE_REFUSED}") for option in ("--burst", "--backlog")]
    + [("--ceiling", "0", f"--ceiling: {SIZE_REFUSED}"), ("--burst", "2e4", SIZE_REFUSED)]
    + [("--steady-seconds", "3601", "--steady-seconds: expected a whole number from 1 to 3,600")]
    + [("--connections", "0", "--connections: expected a whole number from 1 to 10,000")]
    + [("--soak-rate", "-1", "--soak-rate: expected a whole number from 1 to 5,000")],
)
def test_a_wrong_option_is_refused_before_anything_starts(option, value, reason):
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "throughput.py"), option, value],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2, run.stderr
    assert reason in run.stderr


@pytest.mark.parametrize(
    "script, option, value, reason",
    [
        # Each crashed (a division by zero, min() of nothing) or measured nothing, before.
        ("classifier_throughput.py", "--messages", "-5", "from 1 to 10,000,000"),
        ("classifier_throughput.py", "--rounds", "0", "from 1 to 100"),
        ("intake_journal.py", "--messages", "0", "from 1 to 10,000,000"),
        ("intake_journal.py", "--concurrency", "x", "from 1 to 10,000"),
        ("pipeline.py", "--backlog", "-1", "from 1 to 10,000,000"),
        ("pipeline.py", "--urgent", "0", "from 1 to 10,000"),
        ("classifier_crossval.py", "--folds", "1", "from 2 to 100"),
        ("store_statements.py", "--messages", "0", "from 1 to 1,000,000"),
        ("profile_top.py", "--top", "0", "from 1 to 10,000"),
    ],
)
def test_every_bench_script_refuses_a_number_out_of_range(script, option, value, reason):
    extra = ["profile.txt"] if script == "profile_top.py" else []
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *extra, option, value],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2, run.stderr
    assert f"{option}: expected a whole number {reason}, not {value!r}" in run.stderr


async def test_a_steady_phase_begins_once_the_replies_left_to_send_are_sent(tmp_path):
    """`StoreView.quiet`, what each steady phase of the bench waits for first: every stored
    reply through the sender (a burst leaves thousands of acknowledgements to send)."""
    StoreView = from_bench("bench_support").StoreView
    url = await migrated_sqlite(tmp_path / "store.db")
    async with ConversationStore(url) as store:
        [out] = await replies(store, await conversation(store, Channel.SMS, "+15550123"), "hi")
        view = StoreView(url)
        try:
            assert await view.unsent() == 1

            async def send_later() -> None:
                await asyncio.sleep(0.5)
                await store.set_delivery_status(out.message_id, "sandboxed")

            sender = asyncio.create_task(send_later())
            await view.quiet()
            assert sender.done() and await view.unsent() == 0
        finally:
            await view.close()


async def test_the_bench_sees_what_was_stored_a_window_of_seqs_at_a_time(database_url, monkeypatch):
    """`StoreView.stored_since`, how the bench sees messages stored, on both databases: each poll
    reads a window of seqs past the last it saw (a range PostgreSQL reads through the primary
    key whatever its statistics say), and polls one after another catch up with every one."""
    support = from_bench("bench_support")
    monkeypatch.setattr(support, "POLL_SEQS", 4)
    sids = [f"SMwin{i:04x}" for i in range(10)]
    async with ConversationStore(database_url) as store:
        view = support.StoreView(database_url)
        try:
            seq = start = await view.top_seq()
            for i, sid in enumerate(sids):
                await conversation(store, Channel.SMS, f"+1555010{i:04d}", sid=sid)
            seen: set[str] = set()
            polls = 0
            while seen != set(sids) and polls < 20:
                seq, found = await view.stored_since(seq, "win")
                seen.update(found)
                polls += 1
            assert seen == set(sids)
            assert polls >= 3  # ten seqs, four a poll
            assert seq == await view.top_seq() > start
            assert (await view.stored_since(seq, "win"))[0] == seq  # nothing past the last
        finally:
            await view.close()


FIRST = (
    "import sys, time\n"
    "end = time.process_time() + 0.3\n"
    "while time.process_time() < end: pass\n"
    "print('burnt', flush=True)\n"
    "sys.stdin.readline()\n"
)
PARENT = (
    "import subprocess, sys\n"
    f"subprocess.run([sys.executable, '-c', {FIRST!r}])\n"
    "print('second', flush=True)\n"
    "subprocess.run([sys.executable, '-c', 'import sys; sys.stdin.read()'])\n"
)


async def test_the_bench_counts_a_process_that_ended_for_the_one_that_took_its_place():
    """The embedded broker started again is one broker: the CPU its first life used still
    counts once the second runs (bench_support.PeakMemory)."""
    memory = from_bench("bench_support").PeakMemory()
    parent = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PARENT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert parent.stdin is not None and parent.stdout is not None
    try:
        memory.watch(parent.pid, "root")
        assert await parent.stdout.readline() == b"burnt\n"
        first = memory.cpu_seconds()
        (name,) = [n for n in first if n != "root"]
        assert first[name] >= 0.3
        parent.stdin.write(b"\n")  # the first child ends, the second starts
        assert await parent.stdout.readline() == b"second\n"
        await asyncio.sleep(0.2)
        second = memory.cpu_seconds()
        assert [n for n in second if n != "root"] == [name]  # named as the first was
        assert second[name] >= first[name]  # its first life's CPU still counts
    finally:
        parent.stdin.close()
        await parent.wait()
        await memory.stop()


def test_a_router_that_did_not_start_is_told_by_its_own_last_lines_not_the_kafka_clients(
    tmp_path,
):
    """When the router exits before it is ready, the bench shows its own last lines: the Kafka
    client's connection errors, once the broker is gone, filled the whole tail before."""
    log = tmp_path / "router.log"
    own = '{"event":"worker.exited","role":"dispatcher","level":"error"}'
    noise = '{"event":"Unable connect to node with id 111","level":"error","logger":"aiokafka"}'
    log.write_text("\n".join(["starting", own, *[noise] * 200, "stopped."]) + "\n")
    tail = from_bench("bench_support")._tail(log)
    assert own in tail and "starting" in tail and tail.endswith("stopped.")
    assert tail.count(noise) <= 4
