"""The two ceilings the router is measured against, each a server in its own process.

- `http`: bare aiohttp: the Twilio messaging webhook's form POST, the same HMAC-SHA1 signature
  check (twilio's RequestValidator), an empty TwiML answer.
- `gateway`: the same, plus one aiokafka produce (acks=all) per request, awaited before the
  answer, to an embedded broker this process starts (the Kafka-first gateway with nothing else),
  or with --kafka to that cluster, on a topic of its own (--topic, 3 partitions).

    .venv/bin/python bench/bare_server.py http|gateway --port PORT --token TOKEN --url URL \
        [--kafka HOST:PORT --topic NAME]

Prints "ready" on stdout once it accepts requests; SIGTERM stops it (and its broker).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiohttp import web  # noqa: E402
from aiokafka import AIOKafkaProducer  # noqa: E402
from twilio.request_validator import RequestValidator  # noqa: E402

from router.bus.embedded import EmbeddedBroker  # noqa: E402
from router.bus.kafka import create_topics  # noqa: E402

TOPIC = "bench.inbound"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response />'


async def serve(
    mode: str, port: int, token: str, url: str, kafka: str | None = None, topic: str = TOPIC
) -> None:
    validator = RequestValidator(token)
    broker = producer = None
    if mode == "gateway":
        if kafka is None:
            broker = EmbeddedBroker(topics=[topic], partitions=3)
            await broker.start()
            kafka = broker.bootstrap_servers
        else:
            await create_topics(kafka, [topic], 3)
        producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all")
        await producer.start()

    async def receive(request: web.Request) -> web.Response:
        form = await request.post()
        params = {k: str(v) for k, v in form.items()}
        if not validator.validate(url, params, request.headers.get("X-Twilio-Signature", "")):
            raise web.HTTPForbidden(text="bad signature")
        if producer is not None:
            value = json.dumps(params).encode()
            await producer.send_and_wait(topic, value, key=params["From"].encode())
        return web.Response(text=EMPTY_TWIML, content_type="text/xml")

    app = web.Application()
    app.router.add_post("/webhooks/twilio/messaging", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        if producer is not None:
            await producer.stop()
        if broker is not None:
            await broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=("http", "gateway"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--url", required=True, help="the URL the requests were signed for")
    parser.add_argument("--kafka", metavar="HOST:PORT", help="default: an embedded broker")
    parser.add_argument("--topic", default=TOPIC)
    args = parser.parse_args()
    asyncio.run(serve(args.mode, args.port, args.token, args.url, args.kafka, args.topic))


if __name__ == "__main__":
    main()
