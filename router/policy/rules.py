"""The rules in force: the loaded config/ and the classifier compiled and trained from it."""

from __future__ import annotations

from pathlib import Path

from router.classify.classifier import Classifier
from router.core.envelope import Classification, Lane, Outbound, Urgency
from router.operator_files.config import RouterConfig, load_config
from router.routing.replies import Replies, Wait


class Rules:
    def __init__(self, config_dir: Path):
        self.config_dir = Path(config_dir)
        self.config: RouterConfig = load_config(self.config_dir)
        self.classifier = Classifier(self.config.classifier, self.config.version)

    @property
    def version(self) -> str:
        return self.config.version

    def lane(self, text: str, subject: str | None = None) -> Lane:
        return Lane.URGENT if self.classifier.prescreen(text, subject) else Lane.STANDARD

    def classify(
        self, text: str, channel: str | None = None, subject: str | None = None
    ) -> Classification:
        return self.classifier.classify(text, channel=channel, subject=subject)

    def screen(
        self, text: str, channel: str | None = None, subject: str | None = None
    ) -> tuple[Lane, Classification]:
        """The lane and the classification at once: urgent when the pre-screen says it may be
        critical or the classification says it is."""
        urgent, classification = self.classifier.screen(text, channel=channel, subject=subject)
        return lane_after(Lane.URGENT if urgent else Lane.STANDARD, classification), classification

    def queue_for(self, classification: Classification) -> str:
        """The queue a classified message goes to; a doubtful one goes to triage."""
        c = classification
        return self.config.queue_for(c.category, confidence=c.confidence, urgency=c.urgency)

    def acknowledgement_text(
        self,
        category: str,
        language: str,
        ticket: str,
        redactions: list[str],
        *,
        channel: str = "chat",
        urgency: str = "normal",
        wait: Wait | None = None,
    ) -> str:
        return Replies(self.config.templates).acknowledgement(
            category=category,
            urgency=urgency,
            language=language,
            channel=channel,
            ticket=ticket,
            redactions=redactions,
            wait=wait,
        )

    def acknowledgement(
        self,
        conversation: dict,
        language: str,
        redactions: list[str],
        wait: Wait | None = None,
        **fields,
    ) -> Outbound:
        c = conversation
        return Outbound(
            conversation_id=c["id"],
            conversation_key=c["conversation_key"],
            channel=c["channel"],
            to=c["customer_address"],
            kind="acknowledgement",
            author="supportrouter",
            text=self.acknowledgement_text(
                c["category"],
                language,
                c["ticket"],
                redactions,
                channel=c["channel"],
                urgency=c["urgency"],
                wait=wait,
            ),
            **fields,
        )

    def adopt(self, fresh: Rules) -> None:
        """Hot reload: take over everything `fresh` loaded, in one step, so no reader ever
        sees the new config beside the old classifier."""
        vars(self).update(vars(fresh))


def lane_after(lane: Lane, classification: Classification) -> Lane:
    """The lane a message keeps past its classification: urgent when the pre-screen put it
    there or the classification calls it critical (the gateway's or the classifier stage's)."""
    return Lane.URGENT if classification.urgency is Urgency.CRITICAL else lane
