"""The router's consumer groups and the topics each reads: what the classifier, the dispatcher and
the sender build their loops with (tests/test_broker_recycle.py holds them to it), for whoever
must know whether everything published has been read (router/bus/recycler.py)."""

from __future__ import annotations

from router.core.settings import Settings, Topics


def dispatcher_topics(topics: Topics, classifies: bool) -> tuple[list[str], list[str]]:
    """The dispatcher's urgent lane and standard lane. With no classifier stage (`classifies`:
    it classifies whatever the gateway did not), it reads the inbound lanes first, and
    support.classified(.urgent) too: what a stage (or a replay) put there before a switch is
    routed all the same."""
    urgent, standard = [topics.classified_urgent], [topics.classified]
    if classifies:
        urgent, standard = [topics.inbound_urgent, *urgent], [topics.inbound_standard, *standard]
    return urgent, standard


def consumer_groups(settings: Settings) -> dict[str, list[str]]:
    prefix, topics = settings.consumer_group_prefix, settings.topics
    groups = {}
    if settings.classifier_stage:
        groups[f"{prefix}-classifier-urgent"] = [topics.inbound_urgent]
        groups[f"{prefix}-classifier-standard"] = [topics.inbound_standard]
    urgent, standard = dispatcher_topics(topics, not settings.classifier_stage)
    groups[f"{prefix}-dispatcher-urgent"] = urgent
    groups[f"{prefix}-dispatcher"] = standard
    groups[f"{prefix}-sender"] = [topics.outbound]
    return groups
