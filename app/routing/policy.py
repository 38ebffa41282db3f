"""The routing policy: which waiting contact goes to which agent, and why.

Pure code over snapshots, with time as a float (seconds). The router feeds it rows read
in a matching round; the simulator feeds it a virtual clock. Nothing here touches the
database, so both run exactly the same decisions.

Rules, in order:

- Contacts are served by priority (1 is most urgent), then by their original place
  (``enqueued_at``); a rejected or timed-out contact keeps that place.
- A contact's requirement is its queue's required skills plus its own extra skills;
  the queue's relaxation steps apply as the time in the queue grows (cumulative).
- An agent is eligible when available, with room in their points budget for the
  channel, serving the contact's queue (or a queue a relaxation step overflowed it to)
  in their routing profile, past that queue's delay, holding every required skill at
  the minimum or better.
- Sticky: while the queue's sticky timeout runs, only the customer's last agent may take
  the contact. Preferred agents are picked first whenever they are eligible.
- An agent serving several queues takes work from the queue with the best (lowest)
  priority in their profile among the contacts they are eligible for.
- Among the eligible agents, the queue's selection rule picks: ``longest_idle``,
  ``most_skilled`` or ``best_score`` (a :class:`Scorer`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

# An agent who declined (or let time out) an offer is not offered that contact again
# for this long, so a contact does not ping-pong to the same person.
REOFFER_COOLDOWN_SECONDS = 30.0
MAX_CONSIDERED_IN_TRAIL = 25


@dataclass(frozen=True, slots=True)
class Step:
    """A relaxation step, as stored on the queue."""

    after_seconds: float
    action: str  # lower_minimum | drop_skill | add_overflow
    skill_id: uuid.UUID | None = None
    to: int | None = None
    target_queue_id: uuid.UUID | None = None
    crowd: bool = False

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Step:
        target = raw.get("target") or {}
        return cls(
            after_seconds=float(raw["after_seconds"]),
            action=str(raw["action"]),
            skill_id=uuid.UUID(str(raw["skill_id"])) if raw.get("skill_id") else None,
            to=int(raw["to"]) if raw.get("to") is not None else None,
            target_queue_id=uuid.UUID(str(target["queue_id"])) if target.get("queue_id") else None,
            crowd=bool(target.get("crowd")),
        )


@dataclass(slots=True)
class QueuePolicy:
    id: uuid.UUID
    name: str
    required: dict[uuid.UUID, int]  # skill -> minimum proficiency
    steps: list[Step] = field(default_factory=list)
    selection: str = "longest_idle"
    sticky_timeout_seconds: float = 0.0
    wrap_up_seconds: float = 0.0
    overflow_queue_id: uuid.UUID | None = None
    max_wait_seconds: float | None = None


@dataclass(slots=True)
class WaitingContact:
    id: uuid.UUID
    queue_id: uuid.UUID
    channel: str
    priority: int
    enqueued_at: float  # the original place in line
    queue_entered_at: float  # entered the current queue (relaxation runs from here)
    extra_skills: dict[uuid.UUID, int] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    sticky_agent_id: uuid.UUID | None = None
    preferred_agent_ids: tuple[uuid.UUID, ...] = ()
    declined_by: uuid.UUID | None = None
    declined_at: float | None = None
    callback: bool = False
    place: Any = None  # the source's own key of its place in line (the router pages by it)

    def sort_key(self) -> tuple[int, float, str]:
        return (self.priority, self.enqueued_at, str(self.id))


@dataclass(slots=True)
class AgentSnapshot:
    id: uuid.UUID
    capacity: int
    used: int
    idle_since: float
    skills: dict[uuid.UUID, int]
    queues: dict[uuid.UUID, tuple[int, float]]  # queue -> (profile priority, delay seconds)
    channel_costs: dict[str, int]
    name: str = ""
    skill_names: dict[uuid.UUID, str] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def free(self) -> int:
        return self.capacity - self.used


@dataclass(slots=True)
class Requirement:
    """What a contact needs at a given moment, after the relaxation steps due so far."""

    skills: dict[uuid.UUID, int]
    queues: list[uuid.UUID]  # its queue first, then overflow targets added by steps
    steps_applied: list[dict[str, Any]]
    crowd_overflow: bool
    next_change_at: float | None  # when the next step applies (absolute time)


def requirement(queue: QueuePolicy, contact: WaitingContact, now: float) -> Requirement:
    waited = now - contact.queue_entered_at
    skills = dict(queue.required)
    queues = [queue.id]
    applied: list[dict[str, Any]] = []
    crowd = False
    next_at: float | None = None
    for i, step in enumerate(queue.steps):
        if step.after_seconds > waited:
            next_at = contact.queue_entered_at + step.after_seconds
            break
        entry: dict[str, Any] = {"step": i, "after_seconds": step.after_seconds}
        entry["action"] = step.action
        if step.action == "lower_minimum" and step.skill_id in skills and step.to is not None:
            skills[step.skill_id] = min(skills[step.skill_id], step.to)
            entry.update(skill_id=str(step.skill_id), to=step.to)
        elif step.action == "drop_skill" and step.skill_id is not None:
            skills.pop(step.skill_id, None)
            entry["skill_id"] = str(step.skill_id)
        elif step.action == "add_overflow":
            if step.target_queue_id is not None and step.target_queue_id not in queues:
                queues.append(step.target_queue_id)
                entry["target_queue_id"] = str(step.target_queue_id)
            if step.crowd:
                crowd = True
                entry["target"] = "crowd"
        applied.append(entry)
    # The contact's own extra skills are not relaxed: they are what the customer asked for.
    for skill, minimum in contact.extra_skills.items():
        skills[skill] = max(skills.get(skill, 0), minimum)
    return Requirement(skills, queues, applied, crowd, next_at)


# ---------------------------------------------------------------------------- scoring


class Scorer(Protocol):
    """Ranks eligible agents for ``best_score`` queues: higher is better."""

    name: str

    def score(
        self, contact: WaitingContact, agent: AgentSnapshot, need: Requirement, now: float
    ) -> float: ...


class FitScorer:
    """Match the agent to the customer, and keep experts for the customers who need them.

    - Language: the contact's ``language`` attribute matching one of the agent's skill
      names (``"Spanish"``, ``"es"``) earns the most.
    - Value: for valuable customers (``tier`` vip/gold/platinum, or ``value`` >= 1000)
      higher proficiency on the required skills scores higher; for everyone else the
      closest fit above the minimum scores higher, so experts stay free.
    - Idle time breaks the rest (a minute of idle is worth a little).
    """

    name = "fit"
    VALUABLE_TIERS = frozenset({"vip", "gold", "platinum"})

    def score(
        self, contact: WaitingContact, agent: AgentSnapshot, need: Requirement, now: float
    ) -> float:
        total = 0.0
        language = str(contact.attributes.get("language") or "").strip().lower()
        if language:
            names = {n.strip().lower() for n in agent.skill_names.values()}
            if language in names or any(n.startswith(language) for n in names):
                total += 10.0
        valuable = str(contact.attributes.get("tier") or "").lower() in self.VALUABLE_TIERS
        value = contact.attributes.get("value")
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 1000:
            valuable = True
        for skill, minimum in need.skills.items():
            surplus = agent.skills.get(skill, 0) - minimum
            total += surplus * 1.5 if valuable else -surplus * 0.5
        total += min(max(now - agent.idle_since, 0.0), 3600.0) / 600.0
        return total


DEFAULT_SCORER: Scorer = FitScorer()


# ---------------------------------------------------------------------------- matching


@dataclass(slots=True)
class Offer:
    contact_id: uuid.UUID
    agent_id: uuid.UUID
    queue_id: uuid.UUID  # the queue the agent serves it through
    points: int
    why: dict[str, Any]


@dataclass(slots=True)
class Move:
    """A contact that waited past its queue's maximum moves to the overflow queue."""

    contact_id: uuid.UUID
    from_queue_id: uuid.UUID
    to_queue_id: uuid.UUID
    waited_seconds: float


@dataclass(slots=True)
class RoundPlan:
    offers: list[Offer]
    moves: list[Move]
    next_wake_at: float | None  # the earliest time a waiting contact's options change
    more: bool  # stopped at the offer cap with matchable work left
    # Agents kept free for a bigger contact ahead in line: agent -> that contact.
    held: dict[uuid.UUID, uuid.UUID] = field(default_factory=dict)


def _ineligible(
    agent: AgentSnapshot,
    contact: WaitingContact,
    queue: QueuePolicy,
    need: Requirement,
    now: float,
) -> tuple[str, str, float | None] | None:
    """Why ``agent`` cannot take ``contact`` now, as (code, message, changes_at) or None."""
    cost = agent.channel_costs.get(contact.channel)
    if cost is None:
        return ("channel-not-served", f"routing profile does not take {contact.channel}", None)
    served = [q for q in need.queues if q in agent.queues]
    if not served:
        return ("queue-not-served", "routing profile does not serve this queue", None)
    # Never negative: a contact committed after the round read its clock is due now.
    waited = max(now - contact.queue_entered_at, 0.0)
    delays = [agent.queues[q][1] for q in served]
    if min(delays) > waited:
        at = contact.queue_entered_at + min(delays)
        return ("queue-delay", f"profile offers this queue after {min(delays):g} s", at)
    for skill, minimum in need.skills.items():
        have = agent.skills.get(skill, 0)
        if have < minimum:
            if have == 0:
                return ("missing-skill", f"lacks skill {skill}", None)
            return ("low-proficiency", f"skill {skill} at {have}, needs {minimum}", None)
    if (
        contact.sticky_agent_id is not None
        and contact.sticky_agent_id != agent.id
        and queue.sticky_timeout_seconds > 0
        and now < contact.queue_entered_at + queue.sticky_timeout_seconds
    ):
        until = contact.queue_entered_at + queue.sticky_timeout_seconds
        return ("held-for-sticky-agent", "held for the customer's last agent", until)
    if (
        contact.declined_by == agent.id
        and contact.declined_at is not None
        and now < contact.declined_at + REOFFER_COOLDOWN_SECONDS
    ):
        until = contact.declined_at + REOFFER_COOLDOWN_SECONDS
        return ("declined-recently", "declined or missed this contact moments ago", until)
    # Last, so that "no-capacity" means: this agent could take it once work ends.
    if cost > agent.free:
        return ("no-capacity", f"needs {cost} points, {agent.free} free", None)
    return None


def _open_queues(
    agent: AgentSnapshot, contact: WaitingContact, need: Requirement, now: float
) -> list[uuid.UUID]:
    """The contact's queues the agent serves whose profile delay has passed."""
    waited = max(now - contact.queue_entered_at, 0.0)
    return [q for q in need.queues if q in agent.queues and agent.queues[q][1] <= waited]


def _rank(
    queue: QueuePolicy,
    contact: WaitingContact,
    need: Requirement,
    candidates: Sequence[AgentSnapshot],
    now: float,
    scorer: Scorer,
) -> tuple[AgentSnapshot, dict[str, Any]]:
    preferred = [a for a in candidates if a.id in contact.preferred_agent_ids]
    pool = preferred or candidates
    sticky = [a for a in pool if a.id == contact.sticky_agent_id]
    if sticky:
        return sticky[0], {"rule": "sticky", "detail": "the customer's last agent"}
    if queue.selection == "most_skilled":
        best = max(
            pool,
            key=lambda a: (sum(a.skills.get(s, 0) for s in need.skills), now - a.idle_since),
        )
        total = sum(best.skills.get(s, 0) for s in need.skills)
        why: dict[str, Any] = {"rule": "most_skilled", "detail": f"proficiency total {total}"}
    elif queue.selection == "best_score":
        scored = [(scorer.score(contact, a, need, now), now - a.idle_since, a) for a in pool]
        score, _, best = max(scored, key=lambda t: (t[0], t[1]))
        why = {"rule": "best_score", "scorer": scorer.name, "detail": f"score {score:.2f}"}
    else:
        best = max(pool, key=lambda a: (now - a.idle_since, str(a.id)))
        why = {"rule": "longest_idle", "detail": f"idle {max(now - best.idle_since, 0):.1f} s"}
    if preferred:
        why["preferred"] = True
    return best, why


def plan_round(
    now: float,
    queues: Mapping[uuid.UUID, QueuePolicy],
    contacts: Iterable[WaitingContact],
    agents: Sequence[AgentSnapshot],
    *,
    scorer: Scorer = DEFAULT_SCORER,
    max_offers: int | None = None,
) -> RoundPlan:
    """Offers for one tenant at ``now``. Agents' ``used`` points are updated in place."""
    ordered = sorted(contacts, key=WaitingContact.sort_key)
    offers: list[Offer] = []
    moves: list[Move] = []
    wake: float | None = None
    more = False

    def soon(at: float | None) -> None:
        nonlocal wake
        if at is not None and at > now and (wake is None or at < wake):
            wake = at

    # Per contact: its requirement and, for each eligible agent, the profile priority
    # through which that agent serves it.
    plans: list[
        tuple[
            WaitingContact,
            QueuePolicy,
            Requirement,
            dict[uuid.UUID, int],
            list[tuple[uuid.UUID, int]],
        ]
    ] = []
    best_level: dict[uuid.UUID, int] = {}
    live = [a for a in agents if a.free > 0]
    for contact in ordered:
        queue = queues.get(contact.queue_id)
        if queue is None:
            continue
        waited = now - contact.queue_entered_at
        if (
            queue.max_wait_seconds is not None
            and queue.overflow_queue_id is not None
            and queue.overflow_queue_id in queues
        ):
            if waited >= queue.max_wait_seconds:
                moves.append(Move(contact.id, queue.id, queue.overflow_queue_id, waited))
                continue
            soon(contact.queue_entered_at + queue.max_wait_seconds)
        need = requirement(queue, contact, now)
        soon(need.next_change_at)
        eligible: dict[uuid.UUID, int] = {}
        too_full: list[tuple[uuid.UUID, int]] = []
        for agent in live:
            why_not = _ineligible(agent, contact, queue, need, now)
            if why_not is None:
                level = min(agent.queues[q][0] for q in _open_queues(agent, contact, need, now))
                eligible[agent.id] = level
                if level < best_level.get(agent.id, 1 << 30):
                    best_level[agent.id] = level
            elif why_not[0] == "no-capacity":
                level = min(agent.queues[q][0] for q in _open_queues(agent, contact, need, now))
                too_full.append((agent.id, level))
            else:
                soon(why_not[2])
        plans.append((contact, queue, need, eligible, too_full))

    by_id = {a.id: a for a in live}
    skipped = False
    # Agents held free for a bigger contact ahead in line (a call waiting while chats
    # keep arriving): they take nothing smaller until it fits.
    draining: dict[uuid.UUID, uuid.UUID] = {}
    for contact, queue, need, eligible, too_full in plans:
        if max_offers is not None and len(offers) >= max_offers:
            more = more or bool(eligible)
            break
        candidates = [
            by_id[aid]
            for aid, level in eligible.items()
            if level == best_level.get(aid)
            and aid not in draining
            and by_id[aid].free >= by_id[aid].channel_costs[contact.channel]
        ]
        if not candidates:
            if eligible:
                # Every eligible agent has better work waiting, or filled up this round:
                # the next round (asked for below once something was offered) looks again.
                skipped = True
            hold = [
                by_id[a]
                for a, level in too_full
                if a not in draining and level <= best_level.get(a, level)
            ]
            if hold:
                # The one closest to fitting it (then the longest idle) drains for it.
                keep = max(hold, key=lambda a: (a.free, now - a.idle_since))
                draining[keep.id] = contact.id
            continue
        agent, why = _rank(queue, contact, need, candidates, now, scorer)
        served_via = min(_open_queues(agent, contact, need, now), key=lambda q: agent.queues[q][0])
        cost = agent.channel_costs[contact.channel]
        agent.used += cost
        agent.idle_since = now
        why.update(
            considered=len(eligible),
            eligible=len(candidates),
            steps_applied=need.steps_applied,
        )
        offers.append(Offer(contact.id, agent.id, served_via, cost, why))
    if skipped and offers:
        more = True
    return RoundPlan(offers, moves, wake, more or bool(moves), draining)


# ---------------------------------------------------------------------------- explanations


def explain_contact(
    now: float,
    queues: Mapping[uuid.UUID, QueuePolicy],
    contact: WaitingContact,
    agents: Sequence[AgentSnapshot],
    *,
    ahead: int = 0,
    scorer: Scorer = DEFAULT_SCORER,
) -> dict[str, Any]:
    """Why a waiting contact is waiting: the requirement now, every agent of the tenant
    with the reason they are passed over, and who would win if it were matched now."""
    queue = queues.get(contact.queue_id)
    if queue is None:
        return {"requirement": None, "agents": [], "winner": None, "summary": "queue not found"}
    need = requirement(queue, contact, now)
    rows: list[dict[str, Any]] = []
    eligible: list[AgentSnapshot] = []
    for agent in agents:
        why_not = _ineligible(agent, contact, queue, need, now)
        if why_not is None:
            eligible.append(agent)
            rows.append({"agent_id": str(agent.id), "name": agent.name, "eligible": True})
        else:
            row = {
                "agent_id": str(agent.id),
                "name": agent.name,
                "eligible": False,
                "code": why_not[0],
                "reason": why_not[1],
            }
            if why_not[2] is not None:
                row["changes_in_seconds"] = round(why_not[2] - now, 1)
            rows.append(row)
    winner = None
    if eligible:
        best, why = _rank(queue, contact, need, eligible, now, scorer)
        winner = {"agent_id": str(best.id), "name": best.name, **why}
        summary = "an agent is eligible now; the next matching round offers it"
        if ahead:
            summary = f"{ahead} contact(s) ahead take the eligible agents first"
    elif not agents:
        summary = "no agent of this tenant is available"
    else:
        counts: dict[str, int] = {}
        for row in rows:
            code = str(row["code"])
            counts[code] = counts.get(code, 0) + 1
        top = max(counts.items(), key=lambda kv: kv[1])
        summary = f"no eligible agent: {top[1]} of {len(agents)} available agents {top[0]}"
    return {
        "requirement": {
            "skills": [{"skill_id": str(k), "min_proficiency": v} for k, v in need.skills.items()],
            "queues": [str(q) for q in need.queues],
            "crowd_overflow": need.crowd_overflow,
        },
        "steps_applied": need.steps_applied,
        "next_step_in_seconds": (
            round(need.next_change_at - now, 1) if need.next_change_at is not None else None
        ),
        "agents": rows[:MAX_CONSIDERED_IN_TRAIL],
        "agents_total": len(rows),
        "winner": winner,
        "summary": summary,
    }


def explain_agent(
    now: float,
    agent: AgentSnapshot,
    queues: Mapping[uuid.UUID, QueuePolicy],
    contacts: Sequence[WaitingContact],
) -> list[dict[str, Any]]:
    """For an available agent: each waiting contact of the queues they serve, and whether
    they could take it now (and if not, why)."""
    out: list[dict[str, Any]] = []
    for contact in sorted(contacts, key=WaitingContact.sort_key):
        queue = queues.get(contact.queue_id)
        if queue is None:
            continue
        need = requirement(queue, contact, now)
        why_not = _ineligible(agent, contact, queue, need, now)
        row: dict[str, Any] = {
            "contact_id": str(contact.id),
            "queue_id": str(contact.queue_id),
            "waited_seconds": round(now - contact.enqueued_at, 1),
            "eligible": why_not is None,
        }
        if why_not is not None:
            row.update(code=why_not[0], reason=why_not[1])
        out.append(row)
    return out
