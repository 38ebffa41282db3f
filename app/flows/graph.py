"""The contact-flow graph: typed nodes joined by transitions (node ids).

``{"start": "<node id>", "nodes": {"<id>": {"type": ..., ...fields..., transitions}}}``.
This module checks only the *shape* (types, fields, value ranges); a draft may be
incomplete, so transitions are optional here. Whether the graph is runnable (start
exists, no dangling or missing transitions, every node reachable, no input-free loops,
known queues and hours) is ``app.flows.validation``'s job.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

import phonenumbers
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationError,
    model_validator,
)

from app.core.schemas import check_text, no_nul
from app.flows.patterns import check_pattern, full_match

MAX_NODES = 500
NODE_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
ATTRIBUTE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
DTMF_KEYS = frozenset("0123456789*#")


def _text(v: str) -> str:
    # Newlines and tabs are fine in a chat message; other control characters (a carriage
    # return among them) are not. Stored without white space at the ends.
    return check_text(v, allowed_controls="\n\t", whitespace="strip")


def normalize_keyword(v: str) -> str:
    """How a menu keyword and a customer's typed answer are compared."""
    return " ".join(v.split()).casefold()


def _option_key(v: str) -> str:
    if len(v) == 1 and v in DTMF_KEYS:
        return v
    if not v[0].isalpha():
        raise ValueError("must be a DTMF key (0-9, * or #) or a keyword starting with a letter")
    if not all(c.isalnum() or c in " _-'" for c in v) or v != v.strip():
        raise ValueError("a keyword holds letters, digits, spaces, '_', '-' and \"'\"")
    return v


def _e164(v: str) -> str:
    try:
        parsed = phonenumbers.parse(v, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError("must be a phone number in E.164 form, like +14155550100") from exc
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError("is not a valid phone number")
    if phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) != v:
        raise ValueError("must be in strict E.164 form (+, country code, number; no spaces)")
    return v


NodeId = Annotated[str, StringConstraints(pattern=NODE_ID_PATTERN)]
AttributeName = Annotated[str, StringConstraints(pattern=ATTRIBUTE_PATTERN)]
# Spoken or written text; may interpolate attributes as {{name}}.
Text = Annotated[str, StringConstraints(min_length=1, max_length=2000), AfterValidator(_text)]
AttributeValue = Annotated[str, StringConstraints(max_length=1000), AfterValidator(no_nul)]
OptionKey = Annotated[
    str, StringConstraints(min_length=1, max_length=40), AfterValidator(_option_key)
]
Pattern = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200),
    AfterValidator(no_nul),
    AfterValidator(check_pattern),
]
E164 = Annotated[str, StringConstraints(pattern=r"^\+[1-9][0-9]{1,14}$"), AfterValidator(_e164)]
# Numbers are strict: true or "5" is not a priority.
Attempts = Annotated[int, Strict(), Field(ge=1, le=10)]
TimeoutSeconds = Annotated[int, Strict(), Field(ge=1, le=600)]
DigitCount = Annotated[int, Strict(), Field(ge=1, le=64)]
Bound = Annotated[float, Strict(), Field(allow_inf_nan=False)]


@dataclass(frozen=True)
class Transition:
    """An edge out of a node: where it sits in the node, and its target (None: unset)."""

    path: tuple[str | int, ...]
    target: str | None
    required: bool = True


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )


class _Node(_Model):
    # Waits for the customer (a menu choice, typed or keyed input, a yes/no answer).
    waits_for_input: ClassVar[bool] = False
    # Ends the flow: the contact is queued, transferred or disconnected.
    terminal: ClassVar[bool] = False

    def transitions(self) -> list[Transition]:
        return []


class SayNode(_Node):
    """Play or say a text, then go on."""

    type: Literal["say"]
    text: Text
    next: NodeId | None = None

    def transitions(self) -> list[Transition]:
        return [Transition(("next",), self.next)]


class MenuNode(_Node):
    """Offer options chosen by a DTMF key or a keyword. Invalid answers and timeouts
    count as attempts; once ``max_attempts`` are used up the contact leaves through
    ``on_timeout`` (when the last attempt timed out and it is set) or ``on_invalid``."""

    waits_for_input: ClassVar[bool] = True
    type: Literal["menu"]
    prompt: Text
    retry_prompt: Text | None = None
    options: dict[OptionKey, NodeId] = Field(default_factory=dict, max_length=50)
    timeout_seconds: TimeoutSeconds = 8
    on_timeout: NodeId | None = None
    on_invalid: NodeId | None = None
    max_attempts: Attempts = 3

    @model_validator(mode="after")
    def _distinct_keywords(self) -> MenuNode:
        seen: dict[str, str] = {}
        for key in self.options:
            norm = normalize_keyword(key)
            if norm in seen:
                raise ValueError(f"options '{seen[norm]}' and '{key}' are the same keyword")
            seen[norm] = key
        return self

    def transitions(self) -> list[Transition]:
        return [
            *(Transition(("options", k), v) for k, v in self.options.items()),
            Transition(("on_timeout",), self.on_timeout, required=False),
            Transition(("on_invalid",), self.on_invalid),
        ]


class DigitsRule(_Model):
    kind: Literal["digits"]
    min_length: DigitCount = 1
    max_length: DigitCount = 20

    @model_validator(mode="after")
    def _ordered(self) -> DigitsRule:
        if self.min_length > self.max_length:
            raise ValueError("min_length must not exceed max_length")
        return self


class EmailRule(_Model):
    kind: Literal["email"]


class RegexRule(_Model):
    kind: Literal["regex"]
    pattern: Pattern


class NumberRule(_Model):
    kind: Literal["number"]
    min: Bound | None = None
    max: Bound | None = None

    @model_validator(mode="after")
    def _ordered(self) -> NumberRule:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not exceed max")
        return self


InputRule = Annotated[DigitsRule | EmailRule | RegexRule | NumberRule, Field(discriminator="kind")]


class CollectNode(_Node):
    """Ask for a value, check it, and keep it as an attribute. Retries like a menu."""

    waits_for_input: ClassVar[bool] = True
    type: Literal["collect"]
    prompt: Text
    retry_prompt: Text | None = None
    attribute: AttributeName
    validation: InputRule | None = None  # None: any non-blank answer
    timeout_seconds: TimeoutSeconds = 8
    next: NodeId | None = None
    on_timeout: NodeId | None = None
    on_invalid: NodeId | None = None
    max_attempts: Attempts = 3

    def transitions(self) -> list[Transition]:
        return [
            Transition(("next",), self.next),
            Transition(("on_timeout",), self.on_timeout, required=False),
            Transition(("on_invalid",), self.on_invalid),
        ]


class CheckHoursNode(_Node):
    """Go one way when the business hours are open, another when closed."""

    type: Literal["check_hours"]
    business_hours_id: uuid.UUID
    open: NodeId | None = None
    closed: NodeId | None = None

    def transitions(self) -> list[Transition]:
        return [Transition(("open",), self.open), Transition(("closed",), self.closed)]


class SetAttributeNode(_Node):
    type: Literal["set_attribute"]
    name: AttributeName
    value: Annotated[str, StringConstraints(max_length=2000), AfterValidator(no_nul)]
    next: NodeId | None = None

    def transitions(self) -> list[Transition]:
        return [Transition(("next",), self.next)]


class BranchCase(_Model):
    """Exactly one test: ``equals`` a value, is ``in`` a list, or ``matches`` a regex
    (the whole value, up to 256 characters). A missing attribute matches no case."""

    equals: AttributeValue | None = None
    in_: list[AttributeValue] | None = Field(default=None, alias="in", min_length=1, max_length=50)
    matches: Pattern | None = None
    next: NodeId | None = None

    @model_validator(mode="after")
    def _one_test(self) -> BranchCase:
        tests = [t for t in (self.equals, self.in_, self.matches) if t is not None]
        if len(tests) != 1:
            raise ValueError("give exactly one of 'equals', 'in' or 'matches'")
        return self

    def test(self, value: str | None) -> bool:
        if value is None:
            return False
        if self.equals is not None:
            return value == self.equals
        if self.in_ is not None:
            return value in self.in_
        assert self.matches is not None
        return full_match(self.matches, value)


class BranchNode(_Node):
    """The first case that holds for the attribute's value wins; else ``default``."""

    type: Literal["branch"]
    attribute: AttributeName
    cases: list[BranchCase] = Field(default_factory=list, max_length=50)
    default: NodeId | None = None

    def transitions(self) -> list[Transition]:
        return [
            *(Transition(("cases", i, "next"), c.next) for i, c in enumerate(self.cases)),
            Transition(("default",), self.default),
        ]


class SkillRequirement(_Model):
    skill_id: uuid.UUID
    min_proficiency: Annotated[int, Strict()] = Field(default=1, ge=1, le=5)


class RouteToQueueNode(_Node):
    """Queue the contact for an agent (ends the flow)."""

    terminal: ClassVar[bool] = True
    type: Literal["route_to_queue"]
    queue_id: uuid.UUID
    priority: Annotated[int, Strict()] = Field(
        default=5, ge=1, le=10, description="1 is the most urgent"
    )
    extra_skills: list[SkillRequirement] = Field(default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _distinct_skills(self) -> RouteToQueueNode:
        ids = [s.skill_id for s in self.extra_skills]
        if len(ids) != len(set(ids)):
            raise ValueError("extra_skills names a skill twice")
        return self


class OfferCallbackNode(_Node):
    """Offer a call back instead of waiting. Accepted: the callback is queued and the
    flow goes on at ``accepted`` (or ends when unset); declined or no answer:
    ``declined``."""

    waits_for_input: ClassVar[bool] = True
    type: Literal["offer_callback"]
    queue_id: uuid.UUID
    prompt: Text
    timeout_seconds: TimeoutSeconds = 8
    accepted: NodeId | None = None
    declined: NodeId | None = None

    def transitions(self) -> list[Transition]:
        return [
            Transition(("accepted",), self.accepted, required=False),
            Transition(("declined",), self.declined),
        ]


class TransferNode(_Node):
    """Transfer the call to an external number (ends the flow)."""

    terminal: ClassVar[bool] = True
    type: Literal["transfer"]
    number: E164


class SendMessageNode(_Node):
    """Send a message (SMS or chat) to the customer, then go on."""

    type: Literal["send_message"]
    text: Text
    next: NodeId | None = None

    def transitions(self) -> list[Transition]:
        return [Transition(("next",), self.next)]


class EndNode(_Node):
    terminal: ClassVar[bool] = True
    type: Literal["end"]
    reason: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")] | None = None


Node = Annotated[
    SayNode
    | MenuNode
    | CollectNode
    | CheckHoursNode
    | SetAttributeNode
    | BranchNode
    | RouteToQueueNode
    | OfferCallbackNode
    | TransferNode
    | SendMessageNode
    | EndNode,
    Field(discriminator="type"),
]
NODE_TYPES = frozenset(
    {
        "say",
        "menu",
        "collect",
        "check_hours",
        "set_attribute",
        "branch",
        "route_to_queue",
        "offer_callback",
        "transfer",
        "send_message",
        "end",
    }
)
_RULE_KINDS = frozenset({"digits", "email", "regex", "number"})

EXAMPLE_GRAPH: dict[str, Any] = {
    "start": "welcome",
    "nodes": {
        "welcome": {"type": "say", "text": "Thanks for calling Acme.", "next": "hours"},
        "hours": {
            "type": "check_hours",
            "business_hours_id": "0195f3a0-7c1e-7000-8000-000000000001",
            "open": "menu",
            "closed": "closed",
        },
        "menu": {
            "type": "menu",
            "prompt": "For sales press 1, for support press 2.",
            "options": {"1": "sales", "2": "support"},
            "on_invalid": "support",
        },
        "sales": {
            "type": "route_to_queue",
            "queue_id": "0195f3a0-7c1e-7000-8000-000000000002",
            "priority": 3,
        },
        "support": {"type": "route_to_queue", "queue_id": "0195f3a0-7c1e-7000-8000-000000000003"},
        "closed": {"type": "say", "text": "We are closed. Goodbye.", "next": "bye"},
        "bye": {"type": "end"},
    },
}


class FlowGraph(_Model):
    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE_GRAPH]})

    start: NodeId | None = None
    nodes: dict[NodeId, Node] = Field(default_factory=dict, max_length=MAX_NODES)


# --- parsing with clean paths ----------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a graph, at a JSON path inside it (``nodes.menu1.options.3``)."""

    path: str
    code: str
    message: str
    cycle: tuple[str, ...] | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "code": self.code, "message": self.message}
        if self.cycle is not None:
            out["cycle"] = list(self.cycle)
        return out


class GraphShapeError(ValueError):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{p.path}: {p.message}" for p in problems))
        self.problems = problems


def clean_loc(loc: Sequence[str | int], error_type: str | None = None) -> list[str | int]:
    """A pydantic location inside a graph without the union tags pydantic inserts
    (``nodes.m1.menu.prompt`` -> ``nodes.m1.prompt``) or its ``[key]`` marker; an
    unknown or missing tag points at the ``type`` (or ``kind``) field."""
    parts = list(loc)
    out: list[str | int] = []
    i = 0
    while i < len(parts):
        p = parts[i]
        if p == "[key]":
            i += 1
            continue
        out.append(p)
        if p == "nodes" and i + 2 < len(parts) and parts[i + 2] in NODE_TYPES:
            out.append(parts[i + 1])
            i += 3
            continue
        if p == "validation" and i + 1 < len(parts) and parts[i + 1] in _RULE_KINDS:
            i += 2
            continue
        i += 1
    if error_type in ("union_tag_invalid", "union_tag_not_found"):
        out.append("kind" if out and out[-1] == "validation" else "type")
    return out


def clean_error(err: dict[str, Any], prefix_len: int = 0) -> dict[str, Any]:
    """A pydantic error of (or inside) a graph with a clean location and message;
    ``prefix_len`` location parts lead to the graph (``body``, ``draft``) and stay."""
    loc = list(err.get("loc", ()))
    head, rest = loc[:prefix_len], loc[prefix_len:]
    out = dict(err, loc=(*head, *clean_loc(rest, err.get("type"))))
    kind = out["loc"][-1] if out["loc"] else "type"
    choices = ", ".join(sorted(_RULE_KINDS if kind == "kind" else NODE_TYPES))
    if err.get("type") == "union_tag_not_found":
        out["msg"] = f"is required (one of: {choices})"
    elif err.get("type") == "union_tag_invalid":
        out["msg"] = f"must be one of: {choices}"
    return out


def shape_problems(exc: ValidationError) -> list[Problem]:
    """Pydantic errors of a graph as problems with clean paths."""
    problems = []
    for err in exc.errors():
        e = clean_error(dict(err))
        path = ".".join(str(p) for p in e["loc"])
        reason = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        problems.append(Problem(path or "(graph)", "invalid-shape", reason))
    return problems


def parse_graph(data: Any) -> FlowGraph:
    """A graph from plain data (JSON or YAML), or GraphShapeError with every problem."""
    if isinstance(data, FlowGraph):
        return data
    try:
        return FlowGraph.model_validate(data)
    except ValidationError as exc:
        raise GraphShapeError(shape_problems(exc)) from None
    except UnicodeError:
        # Lone surrogates in an unconstrained place cannot become text.
        raise GraphShapeError(
            [Problem("(graph)", "invalid-shape", "holds text that is not valid Unicode")]
        ) from None


def load_yaml(source: str) -> FlowGraph:
    """A graph written in YAML (blueprints) - the same shape as the JSON form."""
    try:
        data = yaml.safe_load(source)
    except yaml.YAMLError as exc:
        raise GraphShapeError([Problem("(graph)", "invalid-yaml", str(exc))]) from None
    return parse_graph(data)


def dump_graph(graph: FlowGraph) -> dict[str, Any]:
    """The stored (and served) form: defaults filled in, unset transitions left out."""
    return graph.model_dump(mode="json", exclude_none=True, by_alias=True)
