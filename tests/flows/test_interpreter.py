"""The flow interpreter on its own: what a caller or chatter hears and where they end up."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from app.flows.interpreter import (
    STEP_BUDGET,
    Callback,
    End,
    FlowError,
    FlowRunaway,
    FlowSession,
    Message,
    NeedHours,
    Prompt,
    Queue,
    Say,
    SkillNeed,
    Transfer,
    UnexpectedEvent,
    callback_answer,
    dtmf,
    hours,
    run,
    start,
    text,
    timeout,
)

SALES = uuid.UUID("0195f3a0-7c1e-7000-8000-00000000000a")
SUPPORT = uuid.UUID("0195f3a0-7c1e-7000-8000-00000000000b")
HOURS = uuid.UUID("0195f3a0-7c1e-7000-8000-00000000000c")
VIP_SKILL = uuid.UUID("0195f3a0-7c1e-7000-8000-00000000000d")

IVR: dict[str, Any] = {
    "start": "welcome",
    "nodes": {
        "welcome": {"type": "say", "text": "Welcome to Acme, {{caller_name}}.", "next": "menu"},
        "menu": {
            "type": "menu",
            "prompt": "Sales: 1. Support: 2.",
            "retry_prompt": "Sorry. Sales: 1. Support: 2.",
            "options": {"1": "sales", "2": "support", "agent": "support"},
            "timeout_seconds": 5,
            "on_timeout": "no_input",
            "on_invalid": "operator",
            "max_attempts": 3,
        },
        "sales": {
            "type": "route_to_queue",
            "queue_id": str(SALES),
            "priority": 2,
            "extra_skills": [{"skill_id": str(VIP_SKILL), "min_proficiency": 4}],
        },
        "support": {"type": "route_to_queue", "queue_id": str(SUPPORT)},
        "operator": {"type": "transfer", "number": "+14155550100"},
        "no_input": {"type": "say", "text": "We did not hear you. Goodbye.", "next": "bye"},
        "bye": {"type": "end", "reason": "no-input"},
    },
}


def test_ivr_menu_routes_to_the_chosen_queue() -> None:
    actions = run(IVR, [dtmf("1")], {"caller_name": "Ana"})
    assert actions == [
        Say("Welcome to Acme, Ana."),
        Prompt("Sales: 1. Support: 2.", "any", 5),
        Queue(SALES, 2, (SkillNeed(VIP_SKILL, 4),), {"caller_name": "Ana"}),
    ]


def test_a_chat_customer_can_type_the_keyword_or_the_digit() -> None:
    assert run(IVR, [text("  AGENT ")])[-1] == Queue(SUPPORT, 5, (), {})
    assert run(IVR, [text("2")])[-1] == Queue(SUPPORT, 5, (), {})
    # A menu of digits only expects DTMF; of keywords only, text.
    g = json.loads(json.dumps(IVR))
    del g["nodes"]["menu"]["options"]["agent"]
    assert start(g).first_actions[-1] == Prompt("Sales: 1. Support: 2.", "dtmf", 5)
    g["nodes"]["menu"]["options"] = {"sales": "sales"}
    assert start(g).first_actions[-1] == Prompt("Sales: 1. Support: 2.", "text", 5)


def test_invalid_digits_retry_then_leave_through_on_invalid() -> None:
    s = start(IVR)
    assert s.feed(dtmf("7")) == [Prompt("Sorry. Sales: 1. Support: 2.", "any", 5)]
    assert s.feed(dtmf("*")) == [Prompt("Sorry. Sales: 1. Support: 2.", "any", 5)]
    assert s.feed(dtmf("9")) == [Transfer("+14155550100")]
    assert s.finished and s.outcome == "transferred"
    with pytest.raises(UnexpectedEvent):
        s.feed(dtmf("1"))


def test_a_good_answer_after_a_bad_one_resets_nothing_it_should_not() -> None:
    s = start(IVR)
    s.feed(dtmf("7"))
    assert s.feed(dtmf("2")) == [Queue(SUPPORT, 5, (), {})]


def test_timeouts_retry_then_take_the_timeout_path() -> None:
    actions = run(IVR, [timeout(), timeout(), timeout()])
    assert actions[-2:] == [Say("We did not hear you. Goodbye."), End("no-input")]
    assert actions.count(Prompt("Sorry. Sales: 1. Support: 2.", "any", 5)) == 2
    # When the last failure was a wrong key, the invalid path wins.
    assert run(IVR, [timeout(), timeout(), dtmf("5")])[-1] == Transfer("+14155550100")


def test_without_on_timeout_a_timeout_counts_as_invalid() -> None:
    g = json.loads(json.dumps(IVR))
    del g["nodes"]["menu"]["on_timeout"]
    g["nodes"]["menu"]["max_attempts"] = 1
    assert run(g, [timeout()])[-1] == Transfer("+14155550100")


COLLECT: dict[str, Any] = {
    "start": "ask",
    "nodes": {
        "ask": {
            "type": "collect",
            "prompt": "Enter your 6 to 8 digit account number, then hash.",
            "retry_prompt": "That was not an account number. Try again.",
            "attribute": "account",
            "validation": {"kind": "digits", "min_length": 6, "max_length": 8},
            "max_attempts": 2,
            "next": "thanks",
            "on_invalid": "human",
        },
        "thanks": {"type": "say", "text": "Thanks, account {{account}}.", "next": "q"},
        "q": {"type": "route_to_queue", "queue_id": str(SUPPORT)},
        "human": {"type": "route_to_queue", "queue_id": str(SALES), "priority": 1},
    },
}


def test_collect_digits_keeps_a_valid_answer() -> None:
    s = start(COLLECT)
    assert s.first_actions == [
        Prompt("Enter your 6 to 8 digit account number, then hash.", "dtmf", 8, max_digits=8)
    ]
    assert s.feed(dtmf("12345678#")) == [
        Say("Thanks, account 12345678."),
        Queue(SUPPORT, 5, (), {"account": "12345678"}),
    ]


def test_collect_digits_retries_bad_answers_then_gives_up() -> None:
    s = start(COLLECT)
    assert s.feed(dtmf("123")) == [
        Prompt("That was not an account number. Try again.", "dtmf", 8, max_digits=8)
    ]
    assert s.feed(text("12a456")) == [Queue(SALES, 1, (), {})]
    assert "account" not in s.attributes


def test_typed_digits_may_carry_spaces_and_dashes() -> None:
    assert run(COLLECT, [text("123-456 78")])[-1] == Queue(SUPPORT, 5, (), {"account": "12345678"})


@pytest.mark.parametrize(
    ("rule", "good", "bad"),
    [
        ({"kind": "email"}, "Ana@Example.COM", "ana@@example"),
        ({"kind": "regex", "pattern": "[A-Z]{2}[0-9]{4}"}, "AB1234", "ab1234"),
        ({"kind": "number", "min": 1, "max": 10}, "7.5", "11"),
        ({"kind": "number"}, "-3", "nan"),
    ],
)
def test_collect_validations(rule: dict[str, Any], good: str, bad: str) -> None:
    g = json.loads(json.dumps(COLLECT))
    g["nodes"]["ask"]["validation"] = rule
    g["nodes"]["ask"]["max_attempts"] = 1
    ok = run(g, [text(good)])
    assert isinstance(ok[-1], Queue) and ok[-1].queue_id == SUPPORT, ok
    assert run(g, [text(bad)])[-1] == Queue(SALES, 1, (), {})


def test_an_email_is_kept_normalized() -> None:
    g = json.loads(json.dumps(COLLECT))
    g["nodes"]["ask"]["validation"] = {"kind": "email"}
    assert run(g, [text("ana@EXAMPLE.com")])[-1].attributes == {"account": "ana@example.com"}  # type: ignore[union-attr]


def test_overlong_input_is_invalid_not_slow() -> None:
    g = json.loads(json.dumps(COLLECT))
    g["nodes"]["ask"]["validation"] = {"kind": "regex", "pattern": "[a-z]*[a-z]*x"}
    g["nodes"]["ask"]["max_attempts"] = 1
    assert run(g, [text("a" * 10_000)])[-1] == Queue(SALES, 1, (), {})


BRANCHY: dict[str, Any] = {
    "start": "tier",
    "nodes": {
        "tier": {
            "type": "branch",
            "attribute": "tier",
            "cases": [
                {"equals": "gold", "next": "vip"},
                {"in": ["silver", "bronze"], "next": "std"},
                {"matches": "trial-[0-9]+", "next": "trial"},
            ],
            "default": "std",
        },
        "vip": {
            "type": "set_attribute",
            "name": "greeting",
            "value": "Dear {{name}}",
            "next": "hi",
        },
        "trial": {"type": "send_message", "text": "Trials get chat support only.", "next": "std"},
        "hi": {"type": "say", "text": "{{greeting}}, welcome back.", "next": "vq"},
        "vq": {"type": "route_to_queue", "queue_id": str(SALES), "priority": 1},
        "std": {"type": "route_to_queue", "queue_id": str(SUPPORT)},
    },
}


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"tier": "gold", "name": "Ana"}, [Say("Dear Ana, welcome back."), "vip"]),
        ({"tier": "bronze"}, ["std"]),
        ({"tier": "trial-42"}, [Message("Trials get chat support only."), "std"]),
        ({"tier": "trial-"}, ["std"]),
        ({"tier": "GOLD"}, ["std"]),
        ({}, ["std"]),
    ],
)
def test_branch_on_attribute(attributes: dict[str, str], expected: list[Any]) -> None:
    actions = run(BRANCHY, [], attributes)
    queue = actions[-1]
    assert isinstance(queue, Queue)
    assert actions[:-1] == expected[:-1]
    assert queue.queue_id == {"vip": SALES, "std": SUPPORT}[expected[-1]]


HOURS_FLOW: dict[str, Any] = {
    "start": "check",
    "nodes": {
        "check": {
            "type": "check_hours",
            "business_hours_id": str(HOURS),
            "open": "q",
            "closed": "closed",
        },
        "q": {"type": "route_to_queue", "queue_id": str(SUPPORT)},
        "closed": {"type": "say", "text": "We are closed.", "next": "bye"},
        "bye": {"type": "end"},
    },
}


def test_the_flow_asks_the_host_for_business_hours() -> None:
    s = start(HOURS_FLOW)
    assert s.first_actions == [NeedHours(HOURS)] and s.waiting_for == "hours"
    with pytest.raises(UnexpectedEvent):
        s.feed(dtmf("1"))
    assert s.feed(hours(open=True)) == [Queue(SUPPORT, 5, (), {})]
    assert run(HOURS_FLOW, [hours(open=False)]) == [
        NeedHours(HOURS),
        Say("We are closed."),
        End("flow-end"),
    ]


CALLBACK: dict[str, Any] = {
    "start": "offer",
    "nodes": {
        "offer": {
            "type": "offer_callback",
            "queue_id": str(SUPPORT),
            "prompt": "Waits are long. Shall we call you back on {{caller}}?",
            "accepted": "confirm",
            "declined": "hold",
        },
        "confirm": {"type": "send_message", "text": "We will call {{caller}} soon.", "next": "bye"},
        "bye": {"type": "end", "reason": "callback-booked"},
        "hold": {"type": "route_to_queue", "queue_id": str(SUPPORT)},
    },
}


def test_callback_offered_and_accepted() -> None:
    s = start(CALLBACK, {"caller": "+14155550123"})
    assert s.first_actions == [
        Prompt("Waits are long. Shall we call you back on +14155550123?", "yes_no", 8)
    ]
    assert s.waiting_for == "callback_answer"
    assert s.feed(callback_answer(True)) == [
        Callback(SUPPORT, {"caller": "+14155550123"}),
        Message("We will call +14155550123 soon."),
        End("callback-booked"),
    ]


def test_callback_declined_or_unanswered_keeps_the_caller_queued() -> None:
    assert run(CALLBACK, [callback_answer(False)])[-1] == Queue(SUPPORT, 5, (), {})
    assert run(CALLBACK, [timeout()])[-1] == Queue(SUPPORT, 5, (), {})


def test_an_accepted_callback_without_a_next_ends_the_contact() -> None:
    g = json.loads(json.dumps(CALLBACK))
    del g["nodes"]["offer"]["accepted"]
    s = start(g)
    assert s.feed(callback_answer(True)) == [Callback(SUPPORT, {}), End("callback-scheduled")]
    assert s.outcome == "callback"


def test_transfer_to_an_external_number() -> None:
    g = {"start": "t", "nodes": {"t": {"type": "transfer", "number": "+442071838750"}}}
    s = start(g)
    assert s.first_actions == [Transfer("+442071838750")] and s.outcome == "transferred"
    assert s.first_actions[0].as_dict() == {"kind": "transfer", "number": "+442071838750"}


def test_a_session_resumes_from_json_on_the_version_it_started() -> None:
    v1 = start(IVR, {"caller_name": "Ana"}, flow_id="f-1", version=1)
    v1.feed(dtmf("8"))  # one failed attempt, kept across the save
    saved = json.dumps(v1.to_json())

    # Version 2 is published: "1" now goes to support. The saved contact is unaffected.
    v2_graph = json.loads(json.dumps(IVR))
    v2_graph["nodes"]["menu"]["options"]["1"] = "support"
    assert run(v2_graph, [dtmf("1")])[-1].queue_id == SUPPORT  # type: ignore[union-attr]

    resumed = FlowSession.from_json(json.loads(saved))
    assert resumed.version == 1 and resumed.flow_id == "f-1" and resumed.attempts == 1
    assert resumed.feed(dtmf("1"))[-1] == Queue(
        SALES, 2, (SkillNeed(VIP_SKILL, 4),), {"caller_name": "Ana"}
    )


def test_a_resumed_session_keeps_counting_attempts() -> None:
    s = start(IVR)
    s.feed(dtmf("8"))
    s.feed(dtmf("8"))
    resumed = FlowSession.from_json(json.loads(json.dumps(s.to_json())))
    assert resumed.feed(dtmf("8")) == [Transfer("+14155550100")]


def test_sessions_from_unknown_formats_are_refused() -> None:
    data = start(IVR).to_json() | {"format": 99}
    with pytest.raises(FlowError):
        FlowSession.from_json(data)


def test_a_runaway_unvalidated_loop_stops_with_a_clear_error() -> None:
    loop = {"start": "a", "nodes": {"a": {"type": "say", "text": "again", "next": "a"}}}
    with pytest.raises(FlowRunaway, match=f"more than {STEP_BUDGET} steps"):
        start(loop)


def test_an_unvalidated_graph_fails_loudly_at_the_gap() -> None:
    g = {"start": "a", "nodes": {"a": {"type": "say", "text": "hi", "next": "ghost"}}}
    with pytest.raises(FlowError, match=r"'a\.next' leads to 'ghost'"):
        start(g)
    g = {"start": "a", "nodes": {"a": {"type": "say", "text": "hi"}}}
    with pytest.raises(FlowError, match=r"'a\.next' is not set"):
        start(g)


def test_attribute_values_cannot_grow_without_bound() -> None:
    g = {
        "start": "m",
        "nodes": {
            "m": {"type": "menu", "prompt": "?", "options": {"1": "double"}, "on_invalid": "e"},
            "double": {"type": "set_attribute", "name": "x", "value": "{{x}}{{x}}ab", "next": "m"},
            "e": {"type": "end"},
        },
    }
    s = start(g)
    for _ in range(40):
        s.feed(dtmf("1"))
    assert len(s.attributes["x"]) == 2000
