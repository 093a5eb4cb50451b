"""The rules in force: the loaded config/ and the classifier compiled and trained from it."""

from __future__ import annotations

from pathlib import Path

from router.classifier import Classifier
from router.config import RouterConfig, load_config
from router.envelope import Classification, Lane, Outbound


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

    def classify(self, text: str, channel: str | None = None, subject: str | None = None) -> Classification:
        return self.classifier.classify(text, channel=channel, subject=subject)

    def queue_for(self, classification: Classification) -> str:
        """The queue a classified message goes to; a doubtful one goes to triage."""
        c = classification
        return self.config.queue_for(c.category, confidence=c.confidence, urgency=c.urgency)

    def acknowledgement_text(self, category: str, language: str, ticket: str, redactions: list[str]) -> str:
        templates = self.config.templates
        entry = templates.acknowledgement.get(category) or templates.acknowledgement["default"]
        lang = language if language in ("zh", "en") else "en"
        text = getattr(entry, lang).format(ticket=ticket)
        if redactions:
            text += "\n" + getattr(templates.secret_warning, lang)
        return text

    def acknowledgement(self, conversation: dict, language: str, redactions: list[str], **fields) -> Outbound:
        return Outbound(
            conversation_id=conversation["id"],
            conversation_key=conversation["conversation_key"],
            channel=conversation["channel"],
            to=conversation["customer_address"],
            kind="acknowledgement",
            author="supportrouter",
            text=self.acknowledgement_text(conversation["category"], language, conversation["ticket"], redactions),
            **fields,
        )
