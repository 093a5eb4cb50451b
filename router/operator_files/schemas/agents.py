"""agents.yaml: who the agents are, their queues, languages, skills and capacity per channel."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from router.core.envelope import Channel
from router.operator_files.schemas.common import LANGUAGES, Strict, operator_error


class Agent(Strict):
    username: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{1,40}$")
    name: str = ""
    role: Literal["agent", "supervisor"] = "agent"
    queues: list[str] = Field(default_factory=list)
    languages: list[str] = Field(default_factory=lambda: list(LANGUAGES))
    skills: list[str] = Field(default_factory=list)
    capacity: dict[Channel, int] = Field(default_factory=dict)  # open conversations per channel
    # When they usually work: a business_hours name in routing.yaml. Only to tell customers
    # when someone will be available; it never changes anyone's status.
    hours: str | None = None

    @field_validator("capacity")
    @classmethod
    def _not_negative(cls, value: dict) -> dict:
        if any(n < 0 for n in value.values()):
            raise operator_error("a capacity is a number of conversations, 0 or more")
        return value


class AgentsConfig(Strict):
    version: int
    agents: list[Agent]
    default_capacity: dict[Channel, int] = Field(
        default_factory=lambda: {
            Channel.VOICE: 1,
            Channel.CHAT: 3,
            Channel.TELEGRAM: 3,
            Channel.WHATSAPP: 3,
            Channel.SMS: 5,
            Channel.EMAIL: 10,
        }
    )

    def capacity(self, agent: Agent, channel: str) -> int:
        return agent.capacity.get(channel, self.default_capacity.get(channel, 0))  # type: ignore[call-overload]
