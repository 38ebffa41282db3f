"""Whether a flow graph can run: every problem at once, each at its JSON path.

Pure: the caller passes the ids of the tenant's queues, business hours and skills that
exist (``KnownIds``); ``references`` says which ids a graph names, so the caller can
look up only those.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from app.flows.graph import (
    BranchNode,
    CheckHoursNode,
    FlowGraph,
    MenuNode,
    OfferCallbackNode,
    Problem,
    RouteToQueueNode,
    TransferNode,
    Transition,
    shape_problems,
)


@dataclass(frozen=True)
class KnownIds:
    """Ids that exist for the tenant (or, from ``references``, that a graph names)."""

    queues: frozenset[uuid.UUID] = field(default_factory=frozenset)
    business_hours: frozenset[uuid.UUID] = field(default_factory=frozenset)
    skills: frozenset[uuid.UUID] = field(default_factory=frozenset)

    def __or__(self, other: KnownIds) -> KnownIds:
        return KnownIds(
            self.queues | other.queues,
            self.business_hours | other.business_hours,
            self.skills | other.skills,
        )


def references(graph: FlowGraph) -> KnownIds:
    """The queue, business-hours and skill ids this graph names."""
    queues: set[uuid.UUID] = set()
    hours: set[uuid.UUID] = set()
    skills: set[uuid.UUID] = set()
    for node in graph.nodes.values():
        if isinstance(node, RouteToQueueNode | OfferCallbackNode):
            queues.add(node.queue_id)
        if isinstance(node, RouteToQueueNode):
            skills.update(s.skill_id for s in node.extra_skills)
        if isinstance(node, CheckHoursNode):
            hours.add(node.business_hours_id)
    return KnownIds(frozenset(queues), frozenset(hours), frozenset(skills))


def _path(*parts: Any) -> str:
    return ".".join(str(p) for p in parts)


def validate_document(
    data: Any, known: KnownIds | None = None, *, channel: str = "any"
) -> list[Problem]:
    """Shape problems of plain data (JSON, YAML) if any, else ``validate_graph``'s."""
    try:
        graph = FlowGraph.model_validate(data)
    except ValidationError as exc:
        return shape_problems(exc)
    return validate_graph(graph, known, channel=channel)


def validate_graph(
    graph: FlowGraph, known: KnownIds | None = None, *, channel: str = "any"
) -> list[Problem]:
    """Every reason this graph cannot be published, in a stable order.

    ``known`` None skips the checks of queue, hours and skill ids.
    """
    problems: list[Problem] = []
    nodes = graph.nodes
    if graph.start is None:
        problems.append(Problem("start", "missing-start", "is required"))
    elif graph.start not in nodes:
        problems.append(Problem("start", "unknown-start", f"there is no node '{graph.start}'"))
    for node_id in _walk_order(graph):
        node = nodes[node_id]
        problems += _transition_problems(node_id, node.transitions(), nodes.keys())
        if isinstance(node, MenuNode) and not node.options:
            problems.append(
                Problem(_path("nodes", node_id, "options"), "no-options", "a menu needs an option")
            )
        if isinstance(node, BranchNode) and not node.cases:
            problems.append(
                Problem(_path("nodes", node_id, "cases"), "no-cases", "a branch needs a case")
            )
        if isinstance(node, TransferNode) and channel == "chat":
            problems.append(
                Problem(
                    _path("nodes", node_id),
                    "channel-mismatch",
                    "a chat flow cannot transfer to a phone number",
                )
            )
        if known is not None:
            problems += _reference_problems(node_id, node, known)
    if graph.start in nodes:
        problems += _unreachable(graph)
    problems += _input_free_loops(graph)
    return problems


def _transition_problems(
    node_id: str, transitions: list[Transition], ids: Iterable[str]
) -> list[Problem]:
    existing = set(ids)
    out = []
    for t in transitions:
        where = _path("nodes", node_id, *t.path)
        if t.target is None:
            if t.required:
                out.append(Problem(where, "missing-transition", "is required"))
        elif t.target not in existing:
            out.append(Problem(where, "dangling-transition", f"there is no node '{t.target}'"))
    return out


def _reference_problems(node_id: str, node: Any, known: KnownIds) -> list[Problem]:
    out = []
    if isinstance(node, RouteToQueueNode | OfferCallbackNode) and node.queue_id not in known.queues:
        out.append(
            Problem(_path("nodes", node_id, "queue_id"), "unknown-queue", "there is no such queue")
        )
    if isinstance(node, RouteToQueueNode):
        for i, req in enumerate(node.extra_skills):
            if req.skill_id not in known.skills:
                out.append(
                    Problem(
                        _path("nodes", node_id, "extra_skills", i, "skill_id"),
                        "unknown-skill",
                        "there is no such skill",
                    )
                )
    if isinstance(node, CheckHoursNode) and node.business_hours_id not in known.business_hours:
        out.append(
            Problem(
                _path("nodes", node_id, "business_hours_id"),
                "unknown-business-hours",
                "there are no such business hours",
            )
        )
    return out


def _edges(graph: FlowGraph, node_id: str) -> list[Transition]:
    return [t for t in graph.nodes[node_id].transitions() if t.target in graph.nodes]


def _reachable(graph: FlowGraph) -> list[str]:
    """Nodes reachable from the start, breadth first."""
    if graph.start not in graph.nodes:
        return []
    assert graph.start is not None
    order = [graph.start]
    seen = {graph.start}
    todo = deque([graph.start])
    while todo:
        for t in _edges(graph, todo.popleft()):
            if t.target is not None and t.target not in seen:
                seen.add(t.target)
                order.append(t.target)
                todo.append(t.target)
    return order


def _walk_order(graph: FlowGraph) -> list[str]:
    """Reachable nodes from the start first, then the rest. (Stored drafts are JSONB,
    which does not keep the order of object keys, so graph order alone is arbitrary.)"""
    order = _reachable(graph)
    seen = set(order)
    return order + [n for n in graph.nodes if n not in seen]


def _unreachable(graph: FlowGraph) -> list[Problem]:
    seen = set(_reachable(graph))
    return [
        Problem(_path("nodes", n), "unreachable-node", "no path from the start leads here")
        for n in graph.nodes
        if n not in seen
    ]


def _input_free_loops(graph: FlowGraph) -> list[Problem]:
    """One problem per strongly connected group of nodes that loops without a node that
    waits for the customer (menu, collect, offer_callback): such a loop would spin."""
    free = {n for n, node in graph.nodes.items() if not node.waits_for_input}
    succ: dict[str, list[Transition]] = {
        n: [t for t in _edges(graph, n) if t.target in free] for n in free
    }
    pred: dict[str, set[str]] = {n: set() for n in free}
    for n, ts in succ.items():
        for t in ts:
            assert t.target is not None
            pred[t.target].add(n)

    def closure(start: str, step: Any) -> set[str]:
        seen = {start}
        todo = [start]
        while todo:
            for m in step(todo.pop()):
                if m not in seen:
                    seen.add(m)
                    todo.append(m)
        return seen

    problems = []
    assigned: set[str] = set()
    for n in _walk_order(graph):  # the order a reader follows the flow in
        if n not in free or n in assigned:
            continue
        group = closure(n, lambda x: [t.target for t in succ[x]]) & closure(n, pred.__getitem__)
        assigned |= group
        looped = len(group) > 1 or any(t.target == n for t in succ[n])
        if looped:
            problems.append(_cycle_problem(n, group, succ))
    return problems


def _cycle_problem(start: str, group: set[str], succ: dict[str, list[Transition]]) -> Problem:
    """The shortest loop through ``start`` inside ``group``, reported at the transition
    that closes it."""
    came: dict[str, tuple[str, Transition]] = {}
    todo = deque([start])
    closing: tuple[str, Transition] | None = None
    while todo and closing is None:
        u = todo.popleft()
        for t in succ[u]:
            assert t.target is not None
            if t.target == start:
                closing = (u, t)
                break
            if t.target in group and t.target not in came:
                came[t.target] = (u, t)
                todo.append(t.target)
    assert closing is not None
    last, edge = closing
    chain = [last]
    while chain[-1] != start:
        chain.append(came[chain[-1]][0])
    cycle = (*reversed(chain), start)
    return Problem(
        _path("nodes", last, *edge.path),
        "input-free-loop",
        f"{' -> '.join(cycle)} loops without waiting for the customer "
        "(add a menu or collect to the loop, or break it)",
        cycle=cycle,
    )
