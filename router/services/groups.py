"""The router's consumer groups and the topics each reads: what the classifier, the dispatcher and
the sender build their loops with (tests/test_broker_recycle.py holds them to it), for whoever
must know whether everything published has been read (router/bus/recycler.py)."""

from __future__ import annotations

from router.core.settings import Settings


def consumer_groups(settings: Settings) -> dict[str, list[str]]:
    prefix, topics = settings.consumer_group_prefix, settings.topics
    return {
        f"{prefix}-classifier-urgent": [topics.inbound_urgent],
        f"{prefix}-classifier-standard": [topics.inbound_standard],
        f"{prefix}-dispatcher-urgent": [topics.classified_urgent],
        f"{prefix}-dispatcher": [topics.classified],
        f"{prefix}-sender": [topics.outbound],
    }
