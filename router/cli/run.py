"""`supportrouter run [role]`: the router's services in this process until SIGINT or SIGTERM;
SIGHUP reloads the rules."""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
import sys
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from router.core.settings import Settings
from router.observability.logs import configure_logging

if TYPE_CHECKING:
    from router.app import Router


def command(args: argparse.Namespace) -> int:
    from router.app import Router
    from router.services.workers import plan_for

    if args.held and args.role != "gateway":  # nobody would ever say it may be ready
        print(
            "supportrouter run: --held is the supervisor's own, for its gateway worker alone",
            file=sys.stderr,
        )
        return 2
    settings = Settings()
    configure_logging(settings.log_format, settings.log_level, once=True)

    outcome = {"code": 0}

    async def main() -> None:
        plan = plan_for(settings) if args.role == "all" else None
        router = Router(settings, role=args.role, plan=plan, held=args.held)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, router.reload)
        loop.add_signal_handler(signal.SIGUSR1, router.broker_lost)
        loop.add_signal_handler(signal.SIGUSR2, router.workers_up)
        await router.start()
        _settle_heap()
        try:
            _banner(router)
            if router.workers is not None:
                failed = asyncio.ensure_future(router.workers.exited.wait())
                await asyncio.wait(
                    [asyncio.ensure_future(stop.wait()), failed], return_when="FIRST_COMPLETED"
                )
                if failed.done():
                    print("a worker process exited: stopping the rest", file=sys.stderr, flush=True)
                    outcome["code"] = 1
            else:
                await stop.wait()
            print("\nstopping: intake closed, flushing and committing ...", flush=True)
        finally:
            await router.stop()
        print("stopped.", flush=True)

    try:
        _run(main())
    except RuntimeError as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 1
    return outcome["code"]


def _settle_heap() -> None:
    """Leave what start-up built (modules, the model, the rules, the app) out of the garbage
    collector's full passes. A full pass walks every container object the process holds; with
    that heap it took 40–120 ms on the event loop, a few times a minute under load: the tail
    of the latency (docs/performance.md, "Eleventh round"). Cycles made from now on are collected as before; what start-up made and
    later drops is still freed by its reference count."""
    gc.collect()
    gc.freeze()


def _run(main: Coroutine[Any, Any, None]) -> None:
    """On uvloop's event loop (its sockets cost the gateway and the Kafka clients less),
    or asyncio's where uvloop is not installed."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


def _banner(router: Router) -> None:
    s = router.settings
    lines = [f"supportrouter is running ({router.role}); Ctrl-C stops it."]
    if router.broker:
        lines.append(f"  embedded Kafka broker   {router.broker.bootstrap_servers}")
    else:
        lines.append(f"  Kafka                   {s.kafka_bootstrap_servers}")
    if router.store:
        lines.append(f"  store                   {s.database_url}")
    if router.workers:
        roles = [role for role, _ in router.workers.processes]
        lines.append(
            f"  processes               {', '.join(f'{roles.count(r)} {r}' for r in dict.fromkeys(roles))}"
        )
    port = router.gateway.port if router.gateway else s.http_port if router.workers else None
    if port is not None:
        base = f"http://localhost:{port}"
        lines += [
            f"  customer chat demo      {base}/chat/",
            f"  agents' console         {base}/console/",
            f"  agents' API             {base}/api/  (POST /api/login)",
            f"  health                  {base}/healthz  {base}/readyz  {base}/metrics",
        ]
    if router.admin_password:
        lines.append(
            f"  supervisor login        admin / {router.admin_password}   (generated now; "
            "set SUPPORTROUTER_ADMIN_PASSWORD to choose it)"
        )
    elif router.settings.admin_password is not None:
        lines.append(
            "  supervisor login        admin / the password in SUPPORTROUTER_ADMIN_PASSWORD"
        )
    elif router.store:
        lines.append(
            "  supervisor login        admin / the password printed at its first start "
            "(`supportrouter agent password admin` resets it)"
        )
    print("\n".join(lines), flush=True)
