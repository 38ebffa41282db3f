"""Graph shape and validation: every problem at once, each at its exact path. Pure."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from app.flows.graph import GraphShapeError, load_yaml, parse_graph
from app.flows.validation import KnownIds, references, validate_document, validate_graph

QUEUE = uuid.UUID("0195f3a0-7c1e-7000-8000-000000000002")
HOURS = uuid.UUID("0195f3a0-7c1e-7000-8000-000000000001")
SKILL = uuid.UUID("0195f3a0-7c1e-7000-8000-000000000005")
KNOWN = KnownIds(frozenset({QUEUE}), frozenset({HOURS}), frozenset({SKILL}))


def graph(start: str | None = "a", **nodes: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"nodes": nodes}
    if start is not None:
        out["start"] = start
    return out


def say(text: str = "Hello", next: str | None = None) -> dict[str, Any]:
    return {"type": "say", "text": text} | ({"next": next} if next else {})


def queue(**kw: Any) -> dict[str, Any]:
    return {"type": "route_to_queue", "queue_id": str(QUEUE)} | kw


def menu(options: dict[str, str], **kw: Any) -> dict[str, Any]:
    return {"type": "menu", "prompt": "Choose", "options": options, "on_invalid": "bye"} | kw


END = {"type": "end"}


def problems(
    data: dict[str, Any], known: KnownIds | None = KNOWN, **kw: Any
) -> list[tuple[str, str]]:
    return [(p.path, p.code) for p in validate_document(data, known, **kw)]


def test_a_complete_flow_has_no_problems() -> None:
    data = graph(
        a=say(next="hours"),
        hours={
            "type": "check_hours",
            "business_hours_id": str(HOURS),
            "open": "m",
            "closed": "bye",
        },
        m=menu({"1": "q", "sales": "q", "#": "bye"}),
        q=queue(priority=2, extra_skills=[{"skill_id": str(SKILL), "min_proficiency": 3}]),
        bye=END,
    )
    assert problems(data) == []


def test_start_missing_and_unknown() -> None:
    assert problems(graph(None, a=END)) == [("start", "missing-start")]
    # An unknown start: the nodes are not also all reported as unreachable.
    assert problems(graph("nope", a=END)) == [("start", "unknown-start")]


def test_dangling_transitions_name_the_exact_edge() -> None:
    data = graph(
        a=menu({"1": "q", "3": "ghost"}, on_invalid="bye", on_timeout="void"), q=queue(), bye=END
    )
    assert problems(data) == [
        ("nodes.a.options.3", "dangling-transition"),
        ("nodes.a.on_timeout", "dangling-transition"),
    ]
    data = graph(
        a={
            "type": "branch",
            "attribute": "tier",
            "cases": [{"equals": "gold", "next": "x"}],
            "default": "q",
        },
        q=queue(),
    )
    assert problems(data) == [("nodes.a.cases.0.next", "dangling-transition")]


def test_missing_transitions_of_non_terminal_nodes() -> None:
    data = graph(
        a=say(next="c"),
        c={"type": "collect", "prompt": "Account?", "attribute": "acct", "next": "h"},
        h={"type": "check_hours", "business_hours_id": str(HOURS), "open": "e"},
        e={"type": "send_message", "text": "Bye"},
    )
    assert problems(data) == [
        ("nodes.c.on_invalid", "missing-transition"),
        ("nodes.h.closed", "missing-transition"),
        ("nodes.e.next", "missing-transition"),
    ]


def test_terminal_nodes_need_no_next_and_optional_exits_may_stay_unset() -> None:
    data = graph(
        a={
            "type": "offer_callback",
            "queue_id": str(QUEUE),
            "prompt": "Call back?",
            "declined": "t",
        },
        t={"type": "transfer", "number": "+14155550100"},
    )
    assert problems(data) == []


def test_unreachable_nodes() -> None:
    data = graph(a=say(next="z"), z=END, orphan=say(next="z"), orphan2=END)
    assert problems(data) == [
        ("nodes.orphan", "unreachable-node"),
        ("nodes.orphan2", "unreachable-node"),
    ]


def test_a_loop_without_input_is_reported_with_its_cycle() -> None:
    data = graph(
        a=say("one", next="b"),
        b={"type": "set_attribute", "name": "n", "value": "{{n}}x", "next": "c"},
        c={
            "type": "branch",
            "attribute": "n",
            "cases": [{"equals": "xxx", "next": "q"}],
            "default": "a",
        },
        q=queue(),
    )
    found = validate_graph(parse_graph(data), KNOWN)
    assert [(p.path, p.code) for p in found] == [("nodes.c.default", "input-free-loop")]
    assert found[0].cycle == ("a", "b", "c", "a")
    assert "a -> b -> c -> a" in found[0].message


def test_a_self_loop_is_a_loop() -> None:
    data = graph(a=say(next="a"))
    assert problems(data) == [("nodes.a.next", "input-free-loop")]


def test_a_loop_through_check_hours_still_spins() -> None:
    data = graph(
        a={"type": "check_hours", "business_hours_id": str(HOURS), "open": "q", "closed": "w"},
        w=say("Still closed", next="a"),
        q=queue(),
    )
    assert problems(data) == [("nodes.w.next", "input-free-loop")]


def test_loops_that_wait_for_the_customer_are_fine() -> None:
    data = graph(
        a=menu({"1": "q", "9": "again"}, on_invalid="again"),
        again=say("Once more", next="a"),
        q=queue(),
        bye=END,
    )
    # "bye" is unreachable here (on_invalid points elsewhere): only that is reported.
    assert problems(data) == [("nodes.bye", "unreachable-node")]
    data = graph(
        a={
            "type": "offer_callback",
            "queue_id": str(QUEUE),
            "prompt": "Call back?",
            "declined": "s",
        },
        s=say("Then please hold", next="a"),
    )
    assert problems(data) == []


def test_unknown_queue_hours_and_skill_for_this_tenant() -> None:
    other = str(uuid.uuid4())
    data = graph(
        a={"type": "check_hours", "business_hours_id": other, "open": "q", "closed": "cb"},
        q=queue(queue_id=other, extra_skills=[{"skill_id": str(SKILL)}, {"skill_id": other}]),
        cb={"type": "offer_callback", "queue_id": other, "prompt": "Call back?", "declined": "e"},
        e=END,
    )
    assert problems(data) == [
        ("nodes.a.business_hours_id", "unknown-business-hours"),
        ("nodes.q.queue_id", "unknown-queue"),
        ("nodes.q.extra_skills.1.skill_id", "unknown-skill"),
        ("nodes.cb.queue_id", "unknown-queue"),
    ]
    # Without known ids (nothing to compare with) the references are not judged...
    assert problems(data, known=None) == []
    # ...and references() says what to look up.
    refs = references(parse_graph(data))
    assert refs.queues == {uuid.UUID(other)} and refs.skills == {SKILL, uuid.UUID(other)}


def test_empty_menus_and_branches() -> None:
    data = graph(
        a=menu({}, on_invalid="b"),
        b={"type": "branch", "attribute": "x", "default": "e"},
        e=END,
    )
    assert problems(data) == [("nodes.a.options", "no-options"), ("nodes.b.cases", "no-cases")]


def test_a_chat_flow_cannot_transfer_to_a_phone_number() -> None:
    data = graph(a={"type": "transfer", "number": "+442071838750"})
    assert problems(data, channel="chat") == [("nodes.a", "channel-mismatch")]
    assert problems(data, channel="voice") == []


def test_all_problems_are_reported_together() -> None:
    data = graph(
        "a",
        a=menu({"1": "ghost"}, on_invalid=None),
        b=say(next="b"),
    )
    del data["nodes"]["a"]["on_invalid"]
    assert problems(data) == [
        ("nodes.a.options.1", "dangling-transition"),
        ("nodes.a.on_invalid", "missing-transition"),
        ("nodes.b", "unreachable-node"),
        ("nodes.b.next", "input-free-loop"),
    ]


@pytest.mark.parametrize(
    ("node", "path"),
    [
        ({"type": "teleport"}, "nodes.n.type"),
        ({"text": "no type"}, "nodes.n.type"),
        ({"type": "say", "text": "   "}, "nodes.n.text"),
        ({"type": "say", "text": "hi", "color": "red"}, "nodes.n.color"),
        ({"type": "say", "text": "hi", "next": "bad id!"}, "nodes.n.next"),
        ({"type": "menu", "prompt": "p", "options": {"12": "x"}}, "nodes.n.options.12"),
        ({"type": "menu", "prompt": "p", "options": {"Sales": "x", "sales": "y"}}, "nodes.n"),
        ({"type": "menu", "prompt": "p", "timeout_seconds": 0}, "nodes.n.timeout_seconds"),
        ({"type": "menu", "prompt": "p", "max_attempts": 11}, "nodes.n.max_attempts"),
        ({"type": "collect", "prompt": "p", "attribute": "1x"}, "nodes.n.attribute"),
        (
            {"type": "collect", "prompt": "p", "attribute": "a", "validation": {"kind": "dice"}},
            "nodes.n.validation.kind",
        ),
        (
            {
                "type": "collect",
                "prompt": "p",
                "attribute": "a",
                "validation": {"kind": "digits", "min_length": 6, "max_length": 4},
            },
            "nodes.n.validation",
        ),
        (
            {
                "type": "collect",
                "prompt": "p",
                "attribute": "a",
                "validation": {"kind": "regex", "pattern": "([a-z]"},
            },
            "nodes.n.validation.pattern",
        ),
        (
            {
                "type": "collect",
                "prompt": "p",
                "attribute": "a",
                "validation": {"kind": "regex", "pattern": "(a+)+$"},
            },
            "nodes.n.validation.pattern",
        ),
        (
            {
                "type": "collect",
                "prompt": "p",
                "attribute": "a",
                "validation": {"kind": "regex", "pattern": "x" * 201},
            },
            "nodes.n.validation.pattern",
        ),
        (
            {
                "type": "collect",
                "prompt": "p",
                "attribute": "a",
                "validation": {"kind": "number", "min": 5, "max": 1},
            },
            "nodes.n.validation",
        ),
        ({"type": "check_hours", "business_hours_id": "not-a-uuid"}, "nodes.n.business_hours_id"),
        ({"type": "branch", "attribute": "a", "cases": [{"next": "x"}]}, "nodes.n.cases.0"),
        (
            {"type": "branch", "attribute": "a", "cases": [{"equals": "1", "in": ["2"]}]},
            "nodes.n.cases.0",
        ),
        (
            {"type": "branch", "attribute": "a", "cases": [{"matches": "(x|xy)*"}]},
            "nodes.n.cases.0.matches",
        ),
        ({"type": "route_to_queue", "queue_id": str(QUEUE), "priority": 11}, "nodes.n.priority"),
        ({"type": "route_to_queue", "queue_id": str(QUEUE), "priority": True}, "nodes.n.priority"),
        ({"type": "menu", "prompt": "p", "max_attempts": "3"}, "nodes.n.max_attempts"),
        (
            {
                "type": "route_to_queue",
                "queue_id": str(QUEUE),
                "extra_skills": [{"skill_id": str(SKILL), "min_proficiency": 6}],
            },
            "nodes.n.extra_skills.0.min_proficiency",
        ),
        (
            {
                "type": "route_to_queue",
                "queue_id": str(QUEUE),
                "extra_skills": [{"skill_id": str(SKILL)}] * 2,
            },
            "nodes.n",
        ),
        ({"type": "transfer", "number": "+1 415 555 0100"}, "nodes.n.number"),
        ({"type": "transfer", "number": "+999123456"}, "nodes.n.number"),
        ({"type": "transfer", "number": "004414155550100"}, "nodes.n.number"),
        ({"type": "send_message", "text": "a\x00b"}, "nodes.n.text"),
        ({"type": "end", "reason": "Not Kebab"}, "nodes.n.reason"),
    ],
)
def test_shape_problems_name_the_field(node: dict[str, Any], path: str) -> None:
    found = validate_document(graph("n", n=node), KNOWN)
    assert [p.path for p in found] == [path], found
    assert found[0].code == "invalid-shape"


def test_limits_on_ids_and_size() -> None:
    assert [p.path for p in validate_document(graph("a", **{"a" * 65: END}))] == [
        "nodes." + "a" * 65
    ]
    too_many = {f"n{i}": END for i in range(501)}
    found = validate_document({"start": "n0", "nodes": too_many})
    assert [(p.path, p.code) for p in found] == [("nodes", "invalid-shape")]
    assert "500" in found[0].message


def test_yaml_is_the_same_graph() -> None:
    source = f"""
start: greet
nodes:
  greet: {{type: say, text: "Hi {{{{name}}}}", next: q}}
  q: {{type: route_to_queue, queue_id: {QUEUE}, priority: 2}}
"""
    g = load_yaml(source)
    assert g.start == "greet" and validate_graph(g, KNOWN) == []
    with pytest.raises(GraphShapeError) as err:
        load_yaml("start: a\nnodes:\n  a: {type: say}\n")
    assert [p.path for p in err.value.problems] == ["nodes.a.text"]
