"""The blueprint adapters, in dependency order (a kind refers only to kinds before it)."""

from __future__ import annotations

from app.blueprints.adapters import provisioning
from app.blueprints.adapters.agents import AgentsAdapter
from app.blueprints.adapters.channels import ChannelsAdapter
from app.blueprints.adapters.flows import FlowsAdapter
from app.blueprints.adapters.numbers import NumbersAdapter
from app.blueprints.adapters.skills import SkillsAdapter
from app.blueprints.engine import Adapter

ADAPTERS: list[Adapter] = [
    SkillsAdapter(),
    provisioning.business_hours,
    provisioning.queues,
    provisioning.routing_profiles,
    AgentsAdapter(),
    FlowsAdapter(),
    NumbersAdapter(),
    ChannelsAdapter(),
]
