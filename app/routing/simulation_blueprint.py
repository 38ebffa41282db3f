"""Simulation scenarios from a tenant blueprint (the format of ``tenants/demo.yaml``).

The blueprint's queues, routing profiles and agents become the simulator's queues and
agents: names map to stable synthetic ids, and each item is validated by the API's own
Create schema, so defaults (wrap-up 30 s, service level 20 s, profile priority 1, the
default channel costs, ...) are exactly those a real tenant gets from the same file.
No database is touched.

What a blueprint does not say, the caller does: arrivals per queue, the handle time and
the patience. A queue's contacts arrive on voice when it takes voice, else on its first
channel; their priority and extra skills come from the first flow node that routes to
the queue (else the default priority).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from app.agents.schemas import AgentSkillIn
from app.queues.schemas import QueueCreate
from app.routing.policy import QueuePolicy, Step
from app.routing.simulation import (
    DEFAULT_PRIORITY,
    AgentSpec,
    ArrivalStream,
    HandleTime,
    Scenario,
    SimId,
)
from app.routing_profiles.models import DEFAULT_CHANNEL_COSTS
from app.routing_profiles.schemas import RoutingProfileCreate

# Blueprint name field -> (API id field, kind), as app.blueprints.adapters.generic maps them.
_NAMES = {
    "skill": ("skill_id", "skills"),
    "queue": ("queue_id", "queues"),
    "overflow_queue": ("overflow_queue_id", "queues"),
    "business_hours": ("business_hours_id", "business_hours"),
}
_IDS = {id_key: name for name, (id_key, _) in _NAMES.items()}
M = TypeVar("M", bound=BaseModel)


def synthetic_id(kind: str, name: str) -> uuid.UUID:
    """A stable id per name (the same file, the same ids, the same numbers)."""
    name = f"switchboard-simulation:{kind}:{name.lower()}"
    return SimId(uuid.uuid5(uuid.NAMESPACE_URL, name).int)


def read_blueprint(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a blueprint is a mapping")
    return data


class _Names:
    """The blueprint's names per kind; unknown names are refused with their path."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.known: dict[str, dict[str, uuid.UUID]] = {}
        for kind in ("skills", "queues", "business_hours", "routing_profiles"):
            for i, item in enumerate(_items(data, kind)):
                name = item.get("name")
                if not isinstance(name, str) or not name.strip():
                    raise ValueError(f"{kind}.{i}.name: a name is required")
                self.known.setdefault(kind, {})[name.lower()] = synthetic_id(kind, name)

    def id(self, kind: str, name: object, where: str) -> uuid.UUID:
        found = self.known.get(kind, {}).get(str(name).lower())
        if found is None:
            raise ValueError(f"{where}: unknown {kind.rstrip('s').replace('_', ' ')} '{name}'")
        return found

    def to_ids(self, value: Any, where: str) -> Any:
        if isinstance(value, list):
            return [self.to_ids(v, f"{where}.{i}") for i, v in enumerate(value)]
        if not isinstance(value, dict):
            return value
        out: dict[str, Any] = {}
        for k, v in value.items():
            if k in _NAMES and v is not None:
                id_key, kind = _NAMES[k]
                out[id_key] = self.id(kind, v, f"{where}.{k}")
            else:
                out[k] = self.to_ids(v, f"{where}.{k}")
        return out


def _items(data: Mapping[str, Any], kind: str) -> list[dict[str, Any]]:
    items = data.get(kind) or []
    if not isinstance(items, list) or not all(isinstance(x, dict) for x in items):
        raise ValueError(f"{kind} must be a list of mappings")
    return items


def _parse(model: type[M], raw: dict[str, Any], where: str) -> M:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(_IDS.get(str(p), str(p)) for p in err.get("loc", ()))
        raise ValueError(f"{where}.{loc}: {err.get('msg', 'invalid')}") from None


def _flow_routes(data: Mapping[str, Any], names: _Names) -> dict[uuid.UUID, dict[str, Any]]:
    """Per queue, the first ``route_to_queue`` node's priority and extra skills."""
    routes: dict[uuid.UUID, dict[str, Any]] = {}
    for i, flow in enumerate(_items(data, "flows")):
        nodes = ((flow.get("graph") or {}).get("nodes")) or {}
        for key, node in nodes.items() if isinstance(nodes, dict) else ():
            if not isinstance(node, dict) or node.get("type") != "route_to_queue":
                continue
            where = f"flows.{i}.graph.nodes.{key}"
            qid = names.id("queues", node.get("queue"), f"{where}.queue")
            extra = {
                names.id("skills", s.get("skill"), f"{where}.extra_skills.{j}.skill"): int(
                    s.get("min_proficiency", 1)
                )
                for j, s in enumerate(node.get("extra_skills") or [])
            }
            routes.setdefault(qid, {"priority": int(node.get("priority", 5)), "extra": extra})
    return routes


def scenario_from_blueprint(
    data: Mapping[str, Any],
    *,
    handle: HandleTime,
    queue_arrivals_per_hour: Mapping[str, float] | None = None,
    arrivals_per_hour: float | None = None,
    queue_handle: Mapping[str, HandleTime] | None = None,
    patience_seconds: float | None = None,
    agent_copies: int = 1,
) -> Scenario:
    """Build a scenario. Arrivals: ``queue_arrivals_per_hour`` by queue name (queues not
    named get none), or ``arrivals_per_hour`` split evenly across the queues; one of the
    two. ``agent_copies`` staffs each blueprint agent that many times."""
    names = _Names(data)
    if bool(queue_arrivals_per_hour) == (arrivals_per_hour is not None):
        raise ValueError(
            "give the arrivals either per queue (NAME=RATE, repeatable) or as one total "
            "split evenly across the queues, not both and not neither"
        )
    if agent_copies < 1:
        raise ValueError(f"agent copies must be at least 1, got {agent_copies}")
    queues: dict[uuid.UUID, QueuePolicy] = {}
    sl: dict[uuid.UUID, float] = {}
    channel_of: dict[uuid.UUID, str] = {}
    for i, raw in enumerate(_items(data, "queues")):
        where = f"queues.{i}"
        q = _parse(QueueCreate, names.to_ids(raw, where), where)
        qid = names.id("queues", q.name, f"{where}.name")
        queues[qid] = QueuePolicy(
            id=qid,
            name=q.name,
            required={r.skill_id: r.min_proficiency for r in q.required_skills},
            steps=[Step.from_json(s.model_dump(mode="json")) for s in q.relaxation_steps],
            selection=q.agent_selection,
            sticky_timeout_seconds=float(q.sticky_timeout_seconds),
            wrap_up_seconds=float(q.wrap_up_seconds),
            overflow_queue_id=q.overflow_queue_id,
            max_wait_seconds=float(q.max_wait_seconds) if q.max_wait_seconds else None,
        )
        sl[qid] = float(q.service_level_seconds)
        channel_of[qid] = "voice" if "voice" in q.channels else q.channels[0]
    if not queues:
        raise ValueError("the blueprint has no queues")

    by_name = {queues[qid].name.lower(): qid for qid in queues}
    if queue_arrivals_per_hour:
        rates: dict[uuid.UUID, float] = {}
        for name, rate in queue_arrivals_per_hour.items():
            if name.lower() not in by_name:
                known = ", ".join(q.name for q in queues.values())
                raise ValueError(f"no queue named '{name}' in the blueprint (queues: {known})")
            rates[by_name[name.lower()]] = rate
    else:
        assert arrivals_per_hour is not None
        rates = {qid: arrivals_per_hour / len(queues) for qid in queues}
    handles: dict[uuid.UUID, HandleTime] = {}
    for name, h in (queue_handle or {}).items():
        if name.lower() not in by_name:
            raise ValueError(f"no queue named '{name}' in the blueprint")
        handles[by_name[name.lower()]] = h
    routes = _flow_routes(data, names)
    streams = [
        ArrivalStream(
            queue_id=qid,
            per_hour=rate,
            handle=handles.get(qid, handle),
            channel=channel_of[qid],
            priority=routes.get(qid, {}).get("priority", DEFAULT_PRIORITY),
            patience_seconds=patience_seconds,
            extra_skills=routes.get(qid, {}).get("extra", {}),
        )
        for qid, rate in rates.items()
    ]

    profiles: dict[uuid.UUID, RoutingProfileCreate] = {}
    for i, raw in enumerate(_items(data, "routing_profiles")):
        where = f"routing_profiles.{i}"
        p = _parse(RoutingProfileCreate, names.to_ids(raw, where), where)
        profiles[names.id("routing_profiles", p.name, f"{where}.name")] = p
    skill_names = {synthetic_id("skills", s["name"]): s["name"] for s in _items(data, "skills")}
    agents: list[AgentSpec] = []
    for i, raw in enumerate(_items(data, "agents")):
        where = f"agents.{i}"
        if not raw.get("routing_profile"):
            continue  # serves no queue
        profile = profiles[
            names.id("routing_profiles", raw["routing_profile"], f"{where}.routing_profile")
        ]
        skills: dict[uuid.UUID, int] = {}
        for j, item in enumerate(raw.get("skills") or []):
            at = f"{where}.skills.{j}"
            held = _parse(AgentSkillIn, names.to_ids(item, at), at)
            skills[held.skill_id] = held.proficiency
        costs = profile.channel_costs.as_dict() if profile.channel_costs else DEFAULT_CHANNEL_COSTS
        label = str(raw.get("display_name") or raw.get("email") or f"agent {i + 1}")
        served = {a.queue_id: (a.priority, float(a.delay_seconds)) for a in profile.queues}
        for copy in range(agent_copies):
            agents.append(
                AgentSpec(
                    id=synthetic_id("agents", f"{raw.get('email', i)}#{copy}"),
                    name=label if agent_copies == 1 else f"{label} #{copy + 1}",
                    capacity=profile.capacity_points,
                    skills=skills,
                    queues=served,
                    channel_costs=dict(costs),
                    skill_names={k: skill_names[k] for k in skills},
                )
            )
    return Scenario(queues, sl, streams, agents)
