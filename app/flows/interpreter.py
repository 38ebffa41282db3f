"""Runs a contact flow for one contact, event by event. Pure: no I/O, no clock, no DB.

The host (a channel adapter) starts a session on the published version the contact
arrived on, performs the actions it gets back, and feeds the events that follow::

    session = start(graph, {"caller": "+14155550100"}, flow_id=..., version=3)
    do(session.first_actions)           # e.g. Say, then Prompt(expecting="dtmf")
    do(session.feed(dtmf("2")))         # e.g. Queue(...): the flow has finished

Facts the flow needs from the outside world are asked for, not fetched: a
``check_hours`` node answers ``NeedHours(business_hours_id)`` and waits for
``hours(open)``. A session serializes to JSON (``to_json``/``from_json``) with the
graph it started on, so a contact resumes on its version whatever is published later.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

from email_validator import EmailNotValidError, validate_email

from app.flows.graph import (
    DTMF_KEYS,
    BranchNode,
    CheckHoursNode,
    CollectNode,
    DigitsRule,
    EmailRule,
    EndNode,
    FlowGraph,
    MenuNode,
    NumberRule,
    OfferCallbackNode,
    RegexRule,
    RouteToQueueNode,
    SayNode,
    SendMessageNode,
    SetAttributeNode,
    TransferNode,
    dump_graph,
    normalize_keyword,
    parse_graph,
)
from app.flows.patterns import MAX_INPUT, full_match

STEP_BUDGET = 1000  # node visits per feed; validation already forbids input-free loops
MAX_ATTRIBUTE = 2000  # characters an attribute value keeps
SESSION_FORMAT = 1

_TEMPLATE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]{0,63})\s*\}\}")
_NUMBER = re.compile(r"^[+-]?[0-9]{1,15}(?:\.[0-9]{1,15})?$")


class FlowError(Exception):
    """The flow cannot go on (a graph that was never validated, or a host bug)."""


class FlowRunaway(FlowError):
    """More than ``STEP_BUDGET`` nodes were visited in one feed."""


class UnexpectedEvent(FlowError):
    """An event the session is not waiting for."""


# --- events the host feeds -------------------------------------------------------------


@dataclass(frozen=True)
class Dtmf:
    digits: str


@dataclass(frozen=True)
class TextMessage:
    message: str


@dataclass(frozen=True)
class Timeout:
    pass


@dataclass(frozen=True)
class HoursStatus:
    open: bool


@dataclass(frozen=True)
class CallbackAnswer:
    accepted: bool


Event = Dtmf | TextMessage | Timeout | HoursStatus | CallbackAnswer


def dtmf(digits: str) -> Dtmf:
    return Dtmf(digits)


def text(message: str) -> TextMessage:
    return TextMessage(message)


def timeout() -> Timeout:
    return Timeout()


def hours(open: bool) -> HoursStatus:
    return HoursStatus(open)


def callback_answer(accepted: bool) -> CallbackAnswer:
    return CallbackAnswer(accepted)


# --- actions the host performs ---------------------------------------------------------


class _Action:
    kind: ClassVar[str]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, for logs and the host's own records."""
        return _jsonable({"kind": self.kind, **asdict(self)})  # type: ignore[call-overload]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return str(value) if isinstance(value, uuid.UUID) else value


@dataclass(frozen=True)
class Say(_Action):
    kind: ClassVar[str] = "say"
    text: str


Expecting = Literal["dtmf", "text", "any", "yes_no"]


@dataclass(frozen=True)
class Prompt(_Action):
    """Ask, then send the answer (``dtmf``/``text``/``callback_answer``) or ``timeout``
    after ``timeout_seconds``."""

    kind: ClassVar[str] = "prompt"
    text: str
    expecting: Expecting
    timeout_seconds: int
    max_digits: int | None = None


@dataclass(frozen=True)
class NeedHours(_Action):
    """Tell the flow whether these business hours are open now: feed ``hours(open)``."""

    kind: ClassVar[str] = "need_hours"
    business_hours_id: uuid.UUID


@dataclass(frozen=True)
class SkillNeed:
    skill_id: uuid.UUID
    min_proficiency: int


@dataclass(frozen=True)
class Queue(_Action):
    kind: ClassVar[str] = "queue"
    queue_id: uuid.UUID
    priority: int
    extra_skills: tuple[SkillNeed, ...]
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Callback(_Action):
    kind: ClassVar[str] = "callback"
    queue_id: uuid.UUID
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Transfer(_Action):
    kind: ClassVar[str] = "transfer"
    number: str


@dataclass(frozen=True)
class Message(_Action):
    kind: ClassVar[str] = "message"
    text: str


@dataclass(frozen=True)
class End(_Action):
    kind: ClassVar[str] = "end"
    reason: str


Action = Say | Prompt | NeedHours | Queue | Callback | Transfer | Message | End
Outcome = Literal["queued", "transferred", "ended", "callback"]


def interpolate(template: str, attributes: dict[str, str]) -> str:
    """``{{name}}`` becomes the attribute's value (empty when unset)."""
    return _TEMPLATE.sub(lambda m: attributes.get(m.group(1), ""), template)


def _expecting(node: MenuNode | CollectNode) -> Expecting:
    if isinstance(node, CollectNode):
        return "dtmf" if isinstance(node.validation, DigitsRule) else "text"
    digit_keys = [k in DTMF_KEYS for k in node.options]
    if all(digit_keys):
        return "dtmf"
    return "text" if not any(digit_keys) else "any"


def _checked_input(node: CollectNode, event: Dtmf | TextMessage) -> str | None:
    """The value to keep, or None when the answer is not valid."""
    raw = event.digits if isinstance(event, Dtmf) else event.message
    value = raw.strip()
    if isinstance(event, Dtmf):
        value = value.removesuffix("#")  # the caller's "end of input" key
    if not value or len(value) > MAX_INPUT:
        return None
    rule = node.validation
    if isinstance(rule, DigitsRule):
        digits = value.replace(" ", "").replace("-", "")
        ok = digits.isascii() and digits.isdigit()
        return digits if ok and rule.min_length <= len(digits) <= rule.max_length else None
    if isinstance(rule, EmailRule):
        try:
            return validate_email(value, check_deliverability=False).normalized
        except EmailNotValidError:
            return None
    if isinstance(rule, RegexRule):
        return value if full_match(rule.pattern, value) else None
    if isinstance(rule, NumberRule):
        if not _NUMBER.match(value):
            return None
        number = float(value)
        if (rule.min is not None and number < rule.min) or (
            rule.max is not None and number > rule.max
        ):
            return None
        return value
    return value


class FlowSession:
    """One contact's run through one version of a flow."""

    def __init__(
        self,
        graph: FlowGraph,
        *,
        attributes: dict[str, str] | None = None,
        flow_id: str | None = None,
        version: int | None = None,
        node: str | None = None,
        attempts: int = 0,
        outcome: Outcome | None = None,
    ) -> None:
        self.graph = graph
        self.attributes = dict(attributes or {})
        self.flow_id = flow_id
        self.version = version
        self.node = node  # the node waiting for an event
        self.attempts = attempts  # failed answers at that node
        self.outcome = outcome
        self.first_actions: list[Action] = []
        self._steps = 0

    @property
    def finished(self) -> bool:
        return self.outcome is not None

    @property
    def waiting_for(self) -> Literal["input", "hours", "callback_answer"] | None:
        """Which event the session waits for (``timeout`` is fine for input and answers)."""
        if self.node is None:
            return None
        node = self.graph.nodes[self.node]
        if isinstance(node, CheckHoursNode):
            return "hours"
        return "callback_answer" if isinstance(node, OfferCallbackNode) else "input"

    # --- running ---------------------------------------------------------------------

    def feed(self, event: Event) -> list[Action]:
        """The actions that follow this event, up to the next wait or the flow's end."""
        if self.finished or self.node is None:
            raise UnexpectedEvent(f"the flow has finished ({self.outcome}); got {event!r}")
        self._steps = 0
        actions: list[Action] = []
        node_id, node = self.node, self.graph.nodes[self.node]
        if isinstance(node, CheckHoursNode):
            if not isinstance(event, HoursStatus):
                raise UnexpectedEvent(f"node '{node_id}' waits for hours(open); got {event!r}")
            if event.open:
                self._go(node_id, "open", node.open, actions)
            else:
                self._go(node_id, "closed", node.closed, actions)
        elif isinstance(node, OfferCallbackNode):
            self._answer_callback(node_id, node, event, actions)
        elif isinstance(node, MenuNode | CollectNode):
            self._answer_input(node_id, node, event, actions)
        else:  # pragma: no cover - only the nodes above wait
            raise FlowError(f"node '{node_id}' does not wait")
        return actions

    def _answer_input(
        self, node_id: str, node: MenuNode | CollectNode, event: Event, actions: list[Action]
    ) -> None:
        if isinstance(event, Timeout):
            self._fail(node_id, node, timed_out=True, actions=actions)
            return
        if not isinstance(event, Dtmf | TextMessage):
            raise UnexpectedEvent(f"node '{node_id}' waits for dtmf or text; got {event!r}")
        if isinstance(node, MenuNode):
            chosen = self._choose(node, event)
            if chosen is None:
                self._fail(node_id, node, timed_out=False, actions=actions)
            else:
                self._go(node_id, f"options.{chosen[0]}", chosen[1], actions)
            return
        value = _checked_input(node, event)
        if value is None:
            self._fail(node_id, node, timed_out=False, actions=actions)
            return
        self.attributes[node.attribute] = value
        self._go(node_id, "next", node.next, actions)

    def _answer_callback(
        self, node_id: str, node: OfferCallbackNode, event: Event, actions: list[Action]
    ) -> None:
        if isinstance(event, Timeout) or (isinstance(event, CallbackAnswer) and not event.accepted):
            self._go(node_id, "declined", node.declined, actions)
            return
        if not isinstance(event, CallbackAnswer):
            raise UnexpectedEvent(f"node '{node_id}' waits for callback_answer; got {event!r}")
        actions.append(Callback(node.queue_id, dict(self.attributes)))
        if node.accepted is None:
            actions.append(End("callback-scheduled"))
            self._finish("callback")
        else:
            self._go(node_id, "accepted", node.accepted, actions)

    @staticmethod
    def _choose(node: MenuNode, event: Dtmf | TextMessage) -> tuple[str, str] | None:
        if isinstance(event, Dtmf):
            key = event.digits.strip()
            return (key, node.options[key]) if key in node.options else None
        answer = normalize_keyword(event.message)
        for key, target in node.options.items():
            if normalize_keyword(key) == answer:
                return key, target
        return None

    def _fail(
        self, node_id: str, node: MenuNode | CollectNode, *, timed_out: bool, actions: list[Action]
    ) -> None:
        self.attempts += 1
        if self.attempts < node.max_attempts:
            actions.append(self._prompt(node, retry=True))
            return
        if timed_out and node.on_timeout is not None:
            self._go(node_id, "on_timeout", node.on_timeout, actions)
        else:
            self._go(node_id, "on_invalid", node.on_invalid, actions)

    def _prompt(
        self, node: MenuNode | CollectNode | OfferCallbackNode, *, retry: bool = False
    ) -> Prompt:
        if isinstance(node, OfferCallbackNode):
            return Prompt(self._say(node.prompt), "yes_no", node.timeout_seconds)
        wording = node.retry_prompt if retry and node.retry_prompt else node.prompt
        max_digits = (
            node.validation.max_length
            if isinstance(node, CollectNode) and isinstance(node.validation, DigitsRule)
            else None
        )
        return Prompt(self._say(wording), _expecting(node), node.timeout_seconds, max_digits)

    def _say(self, template: str) -> str:
        return interpolate(template, self.attributes)

    def _finish(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self.node = None
        self.attempts = 0

    def _go(self, from_id: str, transition: str, target: str | None, actions: list[Action]) -> None:
        """Leave ``from_id`` through ``transition`` and run until the next wait or end."""
        self.node, self.attempts = None, 0
        current = target
        where = f"{from_id}.{transition}"
        while True:
            if current is None:
                raise FlowError(f"node transition '{where}' is not set")
            node = self.graph.nodes.get(current)
            if node is None:
                raise FlowError(f"'{where}' leads to '{current}', which does not exist")
            self._steps += 1
            if self._steps > STEP_BUDGET:
                raise FlowRunaway(
                    f"more than {STEP_BUDGET} steps without waiting for the customer "
                    f"(at node '{current}'): the flow loops"
                )
            nxt: tuple[str, str | None] | None = None
            if isinstance(node, SayNode):
                actions.append(Say(self._say(node.text)))
                nxt = ("next", node.next)
            elif isinstance(node, SendMessageNode):
                actions.append(Message(self._say(node.text)))
                nxt = ("next", node.next)
            elif isinstance(node, SetAttributeNode):
                self.attributes[node.name] = self._say(node.value)[:MAX_ATTRIBUTE]
                nxt = ("next", node.next)
            elif isinstance(node, BranchNode):
                value = self.attributes.get(node.attribute)
                hit = next((i for i, c in enumerate(node.cases) if c.test(value)), None)
                nxt = (
                    ("default", node.default)
                    if hit is None
                    else (f"cases.{hit}.next", node.cases[hit].next)
                )
            elif isinstance(node, CheckHoursNode):
                self.node = current
                actions.append(NeedHours(node.business_hours_id))
                return
            elif isinstance(node, MenuNode | CollectNode | OfferCallbackNode):
                self.node = current
                actions.append(self._prompt(node))
                return
            elif isinstance(node, RouteToQueueNode):
                skills = tuple(SkillNeed(s.skill_id, s.min_proficiency) for s in node.extra_skills)
                actions.append(Queue(node.queue_id, node.priority, skills, dict(self.attributes)))
                self._finish("queued")
                return
            elif isinstance(node, TransferNode):
                actions.append(Transfer(node.number))
                self._finish("transferred")
                return
            else:
                assert isinstance(node, EndNode)
                actions.append(End(node.reason or "flow-end"))
                self._finish("ended")
                return
            where = f"{current}.{nxt[0]}"
            current = nxt[1]

    # --- persistence -----------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """Everything needed to resume, the graph included (JSON-serializable)."""
        return {
            "format": SESSION_FORMAT,
            "flow_id": self.flow_id,
            "version": self.version,
            "graph": dump_graph(self.graph),
            "attributes": dict(self.attributes),
            "node": self.node,
            "attempts": self.attempts,
            "outcome": self.outcome,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FlowSession:
        if data.get("format") != SESSION_FORMAT:
            raise FlowError(f"unknown session format {data.get('format')!r}")
        graph = parse_graph(data["graph"])
        node = data.get("node")
        if node is not None and node not in graph.nodes:
            raise FlowError(f"the session waits at '{node}', which its graph lacks")
        return cls(
            graph,
            attributes=data.get("attributes") or {},
            flow_id=data.get("flow_id"),
            version=data.get("version"),
            node=node,
            attempts=int(data.get("attempts") or 0),
            outcome=data.get("outcome"),
        )


def start(
    graph: FlowGraph | dict[str, Any],
    attributes: dict[str, Any] | None = None,
    *,
    flow_id: uuid.UUID | str | None = None,
    version: int | None = None,
) -> FlowSession:
    """A session for one contact, already run up to its first wait (or its end): the
    actions so far are in ``first_actions``. Record the ``version`` it runs."""
    parsed = parse_graph(graph)
    if parsed.start is None:
        raise FlowError("the flow has no start node")
    session = FlowSession(
        parsed,
        attributes={str(k): str(v) for k, v in (attributes or {}).items()},
        flow_id=None if flow_id is None else str(flow_id),
        version=version,
    )
    session._go("(flow)", "start", parsed.start, session.first_actions)
    return session


def run(
    graph: FlowGraph | dict[str, Any],
    events: list[Event],
    attributes: dict[str, Any] | None = None,
) -> list[Action]:
    """Every action of a contact that sends ``events`` in order (for tests, simulators)."""
    session = start(graph, attributes)
    actions = list(session.first_actions)
    for event in events:
        actions += session.feed(event)
    return actions
