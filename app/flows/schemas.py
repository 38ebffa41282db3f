from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.core.schemas import Description, Name
from app.flows.graph import EXAMPLE_GRAPH, FlowGraph

Channel = Literal["voice", "chat", "any"]


class FlowCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Main line",
                    "description": "Greets callers and routes them to sales or support",
                    "channel": "voice",
                    "draft": EXAMPLE_GRAPH,
                }
            ]
        },
    )

    name: Name
    description: Description | None = None
    channel: Channel = Field(default="voice", description="Fixed once the flow exists")
    draft: FlowGraph | None = Field(
        default=None,
        description="The graph to start editing from. A draft may be incomplete: only its "
        "shape is checked here; what stops it from publishing is listed in `problems`.",
    )


class FlowUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"description": "Main line, with the holiday message"},
                {"draft": EXAMPLE_GRAPH},
            ]
        },
    )

    name: Name | None = None
    description: Description | None = None
    draft: FlowGraph | None = Field(default=None, description="Replaces the whole draft")


class GraphProblem(BaseModel):
    path: str = Field(description="Where in the graph, e.g. nodes.menu1.options.3")
    code: str = Field(description="Stable kebab-case code, e.g. dangling-transition")
    message: str
    cycle: list[str] | None = Field(
        default=None, description="For input-free-loop: the node ids around the loop"
    )


class FlowSummary(BaseModel):
    id: uuid.UUID
    name: str
    description: str | None
    channel: Channel
    published_version: int | None = Field(description="What new contacts run; null: never")
    version: int
    created_at: datetime
    updated_at: datetime


_READ_EXAMPLE: dict[str, Any] = {
    "id": "0195f3a0-7c1e-7000-8000-0000000000aa",
    "name": "Main line",
    "description": "Greets callers and routes them to sales or support",
    "channel": "voice",
    "published_version": 2,
    "version": 5,
    "created_at": "2026-11-24T09:00:00Z",
    "updated_at": "2026-11-24T09:30:00Z",
}


class FlowRead(FlowSummary):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                _READ_EXAMPLE
                | {
                    "draft": EXAMPLE_GRAPH,
                    "problems": [
                        {
                            "path": "nodes.hours.closed",
                            "code": "missing-transition",
                            "message": "is required",
                        }
                    ],
                }
            ]
        }
    )

    draft: FlowGraph
    problems: list[GraphProblem] = Field(
        description="What stops the draft from publishing now (empty: it would publish)"
    )


class ValidationResult(BaseModel):
    valid: bool
    problems: list[GraphProblem]


class FlowVersionSummary(BaseModel):
    number: int
    published_at: datetime
    published_by: uuid.UUID | None


class FlowVersionRead(FlowVersionSummary):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "flow_id": _READ_EXAMPLE["id"],
                    "number": 2,
                    "published_at": "2026-11-24T09:30:00Z",
                    "published_by": "0195f3a0-7c1e-7000-8000-0000000000bb",
                    "graph": EXAMPLE_GRAPH,
                }
            ]
        }
    )

    flow_id: uuid.UUID
    graph: FlowGraph
