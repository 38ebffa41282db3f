"""The blueprint adapters, in dependency order (a kind refers only to kinds before it)."""

from __future__ import annotations

from app.blueprints.adapters.skills import SkillsAdapter
from app.blueprints.engine import Adapter

ADAPTERS: list[Adapter] = [
    SkillsAdapter(),
]
