"""`supportrouter simulate TEXT`: what would happen to a message (redaction, lane,
classification, routing, the reply); nothing is sent or stored."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from router.core.settings import Settings


def command(args: argparse.Namespace) -> int:
    from router.classify.redact import redact
    from router.classify.textprep import prepare
    from router.policy.rules import Rules

    settings = Settings()
    rules = Rules(Path(args.config or settings.config_dir))
    text = sys.stdin.read() if args.text == "-" else args.text
    redacted = redact(text)
    subject = redact(args.subject).text if args.subject else None
    if settings.classifier_stage:  # the gateway's pre-screen picks the lane, the stage classifies
        lane = rules.lane(redacted.text, subject)
        c = rules.classify(redacted.text, channel=args.channel, subject=subject)
    else:  # the gateway classifies: what it finds critical is urgent too
        lane, c = rules.screen(redacted.text, channel=args.channel, subject=subject)
    routed = _simulated_route(rules, args, redacted, c)
    result = {
        "channel": args.channel,
        "text": redacted.text,
        "classified_text": prepare(redacted.text, subject),
        "redactions": redacted.kinds,
        "lane": lane.value,
        "category": c.category,
        "urgency": c.urgency.value,
        "confidence": c.confidence,
        "language": c.language,
        "rules_fired": c.rules,
        "entities": c.entities,
        "rules_version": c.rules_version,
        **routed,
    }
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0


def _simulated_route(rules, args: argparse.Namespace, redacted, classification) -> dict:
    """The routing part of simulate: filter matched, queue, priority, and the reply."""
    from router.classify.redact import redact
    from router.cli.replay import offline_decision
    from router.core.envelope import Channel, Envelope, Sender

    envelope = Envelope.new(
        channel=Channel(args.channel),
        channel_message_id="simulate",
        conversation_key="simulate",
        sender=Sender(address="simulate"),
        text=redacted.text,
        redactions=redacted.kinds,
        subject=redact(args.subject).text if args.subject else None,
        classification=classification,
    )
    customer = {"vip": True} if args.vip else {}
    decision = offline_decision(rules, envelope, language=args.language, customer=customer)
    return {
        "filter_matched": decision["filter"],
        "queue": decision["queue"],
        "priority": decision["priority"],
        "ladder_step": decision["step"],
        "next_step_after_seconds": decision["next_step_after_seconds"],
        "explanation": decision["explanation"],
        "routing_rules_version": decision["rules_version"],
        "reply": decision["reply"],
    }
