"""The blueprint's JSON Schema, derived from the API's own request schemas (so the two
cannot drift): every ``*_id`` reference becomes a name, as in a blueprint."""

from __future__ import annotations

import copy
from typing import Any

from pydantic import TypeAdapter

from app.agents.schemas import AgentCreate
from app.blueprints.adapters.generic import REFERENCES
from app.business_hours.schemas import BusinessHoursCreate
from app.channels.schemas import ChannelCreate
from app.flows.schemas import FlowCreate
from app.queues.schemas import QueueCreate
from app.quotas.plans import PLANS
from app.routing_profiles.schemas import RoutingProfileCreate
from app.skills.schemas import SkillCreate

_NAME = {"type": "string", "minLength": 1, "maxLength": 254}


def _rename_refs(node: Any) -> Any:
    if isinstance(node, list):
        return [_rename_refs(x) for x in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for k, v in node.items():
        if k == "properties" and isinstance(v, dict):
            props: dict[str, Any] = {}
            for pk, pv in v.items():
                if pk in REFERENCES:
                    name_key, kind = REFERENCES[pk]
                    many = pk.endswith("_ids")
                    desc = f"The name of one of this blueprint's (or the tenant's) {kind}"
                    props[name_key] = (
                        {"type": "array", "items": _NAME, "description": desc + " (list)"}
                        if many
                        else {"anyOf": [_NAME, {"type": "null"}], "description": desc}
                    )
                else:
                    props[pk] = _rename_refs(pv)
            out[k] = props
        elif k == "required" and isinstance(v, list):
            out[k] = [REFERENCES[r][0] if r in REFERENCES else r for r in v]
        else:
            out[k] = _rename_refs(v)
    return out


def _section(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    schema = copy.deepcopy(schema)
    defs.update(_rename_refs(schema.pop("$defs", {})))
    schema.pop("examples", None)
    return {"type": "array", "items": _rename_refs(schema)}


def blueprint_schema() -> dict[str, Any]:
    defs: dict[str, Any] = {}
    sections = {
        "skills": _section(SkillCreate.model_json_schema(), defs),
        "business_hours": _section(BusinessHoursCreate.model_json_schema(), defs),
        "queues": _section(QueueCreate.model_json_schema(), defs),
        "routing_profiles": _section(RoutingProfileCreate.model_json_schema(), defs),
        "agents": _section(AgentCreate.model_json_schema(), defs),
        "flows": _section(FlowCreate.model_json_schema(), defs),
        "channels": _section(TypeAdapter(ChannelCreate).json_schema(), defs),
    }
    agent = sections["agents"]["items"]
    agent["properties"]["password"] = {
        "type": "string",
        "minLength": 10,
        "maxLength": 128,
        "description": "Demo only: activates the agent at once instead of inviting them.",
    }
    flow = sections["flows"]["items"]
    flow["properties"]["graph"] = _rename_refs(flow["properties"].pop("draft"))
    flow["properties"]["published"] = {"type": "boolean", "default": True}
    sections["phone_numbers"] = {
        "type": "array",
        "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["number"],
            "properties": {
                "number": {"type": "string", "pattern": r"^\+[1-9]\d{1,14}$"},
                "flow": {"anyOf": [_NAME, {"type": "null"}]},
            },
        },
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://switchboard.dev/schemas/tenant-blueprint.json",
        "title": "Switchboard tenant blueprint",
        "description": "A tenant's provisioning as code: `switchboard tenants plan|apply`.",
        "type": "object",
        "additionalProperties": False,
        "required": ["tenant"],
        "properties": {
            "version": {"const": 1},
            "tenant": {
                "type": "object",
                "additionalProperties": False,
                "required": ["slug"],
                "properties": {
                    "slug": {"type": "string", "pattern": "^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"},
                    "name": {"type": "string", "maxLength": 200},
                    "plan": {"enum": sorted(PLANS)},
                    "admin": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["email"],
                        "description": "The owner, created with a new tenant.",
                        "properties": {
                            "email": {"type": "string", "format": "email"},
                            "password": {"type": "string", "minLength": 10, "maxLength": 128},
                            "display_name": {"type": "string", "maxLength": 200},
                        },
                    },
                },
            },
            **sections,
        },
        "$defs": defs,
    }
