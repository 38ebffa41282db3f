"""Discrete-event simulation of a contact center that routes with the real policy.

A virtual clock (a heap of events; no asyncio, no wall clock) drives
:func:`app.routing.policy.plan_round`, the same code the router runs, so what the
simulator predicts is what the routing rules do, relaxation steps, profile delays and
overflow included. Whatever changes the match (an arrival, a completion, an abandonment,
a relaxation step falling due at ``next_wake_at``) starts a round.

Model, per replication:

- Poisson arrivals per :class:`ArrivalStream` (one queue, one channel, one priority).
- Offers are accepted at once. The agent is then held for the handle time plus the
  queue's ``wrap_up_seconds``; the contact's points come back at the end.
  Handle times are exponential, or lognormal with the given mean and coefficient of
  variation (sd / mean, what a workforce report states): sigma^2 = ln(1 + cv^2).
- With a patience, each contact draws an exponential patience and abandons if not
  offered by then (the M/M/N+M assumption of Erlang A).
- Agents are always available (no breaks); as in the router, ``idle_since`` resets when
  an offer is made (``plan_round`` does it) and whenever one of the agent's contacts
  ends, and the wrap-up time is that of the queue the offer went through.

Measurement (the definitions of ``app.routing.erlang``, so the two compare key for key):
contacts arriving in [warm-up, warm-up + hours) are followed until they are answered or
abandon (arrivals go on meanwhile), so late arrivals are not censored; any still waiting
``DRAIN_LIMIT_SECONDS`` after the window count as not answered. Per queue (the
queue the contact first arrived in, even if it overflowed):

- ``service_level``: answered within the queue's threshold / all arrivals.
- ``asa_seconds``: mean wait of the answered contacts.
- ``abandonment_rate``: abandoned / arrivals.
- ``occupancy``: capacity points in use over time, during the measured window, on this
  queue's contacts / the capacity of the agents whose profile serves the queue; overall,
  all points in use / all capacity (for voice-only agents: busy time / staffed time).

Confidence intervals come from independent replications (different seeds, same
scenario): mean of the replication values +- t(0.975, R-1) s / sqrt(R). Replications
are independent by construction, which batch means only approximate.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import statistics
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from app.routing.policy import (
    AgentSnapshot,
    QueuePolicy,
    WaitingContact,
    plan_round,
    requirement,
)

DISTRIBUTIONS = ("exponential", "lognormal")
DEFAULT_PRIORITY = 5  # a new contact's priority (app.routing.models.Contact)
# A run whose line keeps growing has no steady state to report: stop it early.
MAX_WAITING = 5_000
# After the measured window, counted contacts still waiting get at most this long.
DRAIN_LIMIT_SECONDS = 6 * 3600.0
_ARRIVE, _DONE, _ABANDON, _WAKE = 0, 1, 2, 3
# Two-sided 95 % Student t quantiles for 1..30 degrees of freedom.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
METRICS = ("service_level", "asa_seconds", "abandonment_rate", "occupancy")


class SimId(uuid.UUID):
    """A UUID that hashes and prints from a cache. The policy keys every dict by id and
    sorts by ``str(id)``; ``uuid.UUID`` computes both in Python on each call, which was
    a fifth of a heavy-load run. Equal to (and hashing like) the plain UUID."""

    __slots__ = ("_hash", "_str")
    _hash: int
    _str: str

    def __init__(self, value: int) -> None:
        super().__init__(int=value)
        object.__setattr__(self, "_hash", hash(value))
        object.__setattr__(self, "_str", super().__str__())

    def __hash__(self) -> int:
        return self._hash

    def __str__(self) -> str:
        return self._str

    def __reduce__(self) -> tuple[Any, ...]:
        return (SimId, (self.int,))


class SimulationOverloaded(ValueError):
    """The waiting line grew past ``MAX_WAITING``: the agents cannot keep up."""


@dataclass(frozen=True, slots=True)
class HandleTime:
    """How long an agent handles one contact (before the queue's wrap-up)."""

    mean_seconds: float
    distribution: str = "exponential"
    cv: float = 1.0  # lognormal only; an exponential's cv is 1 by definition

    def __post_init__(self) -> None:
        if not math.isfinite(self.mean_seconds) or self.mean_seconds <= 0:
            raise ValueError(f"the mean handle time must be above 0 s, got {self.mean_seconds}")
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(
                f"handle-time distribution must be one of {', '.join(DISTRIBUTIONS)}, "
                f"got {self.distribution!r}"
            )
        if not math.isfinite(self.cv) or self.cv <= 0:
            raise ValueError(f"the handle-time cv must be above 0, got {self.cv}")

    def sampler(self, rng: random.Random) -> Callable[[], float]:
        if self.distribution == "exponential":
            rate = 1.0 / self.mean_seconds
            return lambda: rng.expovariate(rate)
        sigma2 = math.log1p(self.cv**2)
        mu, sigma = math.log(self.mean_seconds) - sigma2 / 2, math.sqrt(sigma2)
        return lambda: rng.lognormvariate(mu, sigma)


@dataclass(frozen=True, slots=True)
class ArrivalStream:
    """Poisson arrivals of one kind of contact into one queue."""

    queue_id: uuid.UUID
    per_hour: float
    handle: HandleTime
    channel: str = "voice"
    priority: int = DEFAULT_PRIORITY
    patience_seconds: float | None = None
    extra_skills: Mapping[uuid.UUID, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """A staffed agent: skills, the queues of their routing profile, channel costs."""

    id: uuid.UUID
    name: str
    capacity: int
    skills: Mapping[uuid.UUID, int]
    queues: Mapping[uuid.UUID, tuple[int, float]]  # queue -> (profile priority, delay s)
    channel_costs: Mapping[str, int]
    skill_names: Mapping[uuid.UUID, str] = field(default_factory=dict)

    def snapshot(self) -> AgentSnapshot:
        return AgentSnapshot(
            id=self.id,
            capacity=self.capacity,
            used=0,
            idle_since=0.0,
            skills=dict(self.skills),
            queues=dict(self.queues),
            channel_costs=dict(self.channel_costs),
            name=self.name,
            skill_names=dict(self.skill_names),
        )


@dataclass(slots=True)
class Scenario:
    queues: dict[uuid.UUID, QueuePolicy]
    sl_seconds: dict[uuid.UUID, float]  # each queue's service-level threshold
    streams: list[ArrivalStream]
    agents: list[AgentSpec]

    def check(self) -> None:
        """Refuse what cannot be simulated meaningfully, with the reason."""
        if not self.agents:
            raise ValueError("the scenario has no agents")
        if not any(s.per_hour > 0 for s in self.streams):
            raise ValueError("the scenario has no arrivals: give an arrival rate above 0")
        for s in self.streams:
            if s.queue_id not in self.queues:
                raise ValueError(f"arrivals into an unknown queue {s.queue_id}")
            if not math.isfinite(s.per_hour) or s.per_hour < 0:
                raise ValueError(f"arrivals per hour must be 0 or more, got {s.per_hour}")
            if s.patience_seconds is not None and not s.patience_seconds > 0:
                raise ValueError(f"patience must be above 0 s, got {s.patience_seconds}")
            if s.per_hour > 0 and s.patience_seconds is None and not self._servable(s):
                name = self.queues[s.queue_id].name
                raise ValueError(
                    f"no agent serves queue '{name}' on {s.channel} with the skills it needs "
                    "(even after its relaxation steps and overflow), so its contacts would "
                    "wait forever"
                )
        if all(s.patience_seconds is None for s in self.streams):
            # Necessary for a steady state: the work offered fits the points staffed.
            offered = sum(
                s.per_hour
                / 3600.0
                * (s.handle.mean_seconds + self.queues[s.queue_id].wrap_up_seconds)
                * min(a.channel_costs.get(s.channel, math.inf) for a in self.agents)
                for s in self.streams
                if s.per_hour > 0
            )
            capacity = sum(a.capacity for a in self.agents)
            if offered >= capacity:
                raise ValueError(
                    f"the work offered ({offered:.4g} points busy on average) does not fit "
                    f"the {capacity} points staffed: without a patience the line grows "
                    "without bound"
                )

    def _servable(self, stream: ArrivalStream) -> bool:
        """Whether some agent could take this stream's contacts once every relaxation step
        has applied, in its queue or a queue it overflows to after the maximum wait."""
        seen, todo = set(), [stream.queue_id]
        while todo:
            qid = todo.pop()
            if qid in seen or qid not in self.queues:
                continue
            seen.add(qid)
            queue = self.queues[qid]
            probe = WaitingContact(
                uuid.UUID(int=0),
                qid,
                stream.channel,
                stream.priority,
                0.0,
                0.0,
                extra_skills=dict(stream.extra_skills),
            )
            need = requirement(queue, probe, math.inf)
            for a in self.agents:
                cost = a.channel_costs.get(stream.channel)
                if (
                    cost is not None
                    and cost <= a.capacity
                    and any(q in a.queues for q in need.queues)
                    and all(a.skills.get(k, 0) >= m for k, m in need.skills.items())
                ):
                    return True
            if queue.overflow_queue_id is not None and queue.max_wait_seconds is not None:
                todo.append(queue.overflow_queue_id)
        return False


@dataclass(slots=True)
class _Tally:
    arrivals: int = 0
    answered: int = 0
    within_sl: int = 0
    abandoned: int = 0
    wait_answered: float = 0.0
    busy_points_seconds: float = 0.0


@dataclass(slots=True)
class _Waiting:
    contact: WaitingContact
    stream: int
    arrived_at: float
    counted: bool


def run_once(
    scenario: Scenario, *, hours: float, warmup_hours: float, seed: int
) -> dict[uuid.UUID | None, dict[str, float]]:
    """One replication: per queue (and None for overall) the four measures, plus
    ``arrivals`` (contacts counted). A measure without data (no answers) is NaN."""
    rng = random.Random(seed)  # noqa: S311 - a model of arrivals, not a secret
    start, end = warmup_hours * 3600.0, (warmup_hours + hours) * 3600.0
    queues, streams = scenario.queues, scenario.streams
    agents = [a.snapshot() for a in scenario.agents]
    by_id = {a.id: a for a in agents}
    samplers = [s.handle.sampler(rng) for s in streams]
    rates = [s.per_hour / 3600.0 for s in streams]
    tallies = {qid: _Tally() for qid in queues}
    # Overflow moves happen even when nobody is free; otherwise a round with no free
    # agent decides nothing (the next completion starts one with the clock as it is).
    can_move = any(
        q.max_wait_seconds is not None and q.overflow_queue_id in queues for q in queues.values()
    )
    events: list[tuple[float, int, int, Any]] = []
    order = itertools.count()
    for i, rate in enumerate(rates):
        if rate > 0:
            heapq.heappush(events, (rng.expovariate(rate), next(order), _ARRIVE, i))
    waiting: dict[uuid.UUID, _Waiting] = {}
    contact_numbers = itertools.count(1)
    wakes: set[float] = set()
    pending = 0  # counted contacts not yet answered or abandoned
    free_agents = len(agents)

    while events:
        now, _, kind, data = heapq.heappop(events)
        if now >= end and (pending == 0 or now >= end + DRAIN_LIMIT_SECONDS):
            break
        if kind == _ARRIVE:
            s = streams[data]
            heapq.heappush(events, (now + rng.expovariate(rates[data]), next(order), _ARRIVE, data))
            cid = SimId(next(contact_numbers))
            contact = WaitingContact(
                cid, s.queue_id, s.channel, s.priority, now, now, extra_skills=dict(s.extra_skills)
            )
            counted = start <= now < end
            waiting[cid] = _Waiting(contact, data, now, counted)
            if counted:
                pending += 1
                tallies[s.queue_id].arrivals += 1
            if s.patience_seconds is not None:
                patience = rng.expovariate(1.0 / s.patience_seconds)
                heapq.heappush(events, (now + patience, next(order), _ABANDON, cid))
            if len(waiting) > MAX_WAITING:
                raise SimulationOverloaded(
                    f"more than {MAX_WAITING} contacts waiting at once: the agents cannot keep "
                    "up with these arrivals (add agents, or give a patience)"
                )
        elif kind == _DONE:
            agent, points = data
            if agent.used == agent.capacity:
                free_agents += 1
            agent.used -= points
            agent.idle_since = now  # as the router does whenever it frees points
        elif kind == _ABANDON:
            gone = waiting.pop(data, None)
            if gone is None:  # answered before its patience ran out
                continue
            if gone.counted:
                pending -= 1
                tallies[streams[gone.stream].queue_id].abandoned += 1
        else:
            wakes.discard(now)
        if not waiting or (free_agents == 0 and not can_move):
            continue

        for _ in range(10_000):
            plan = plan_round(now, queues, [w.contact for w in waiting.values()], agents)
            for move in plan.moves:
                moved = waiting[move.contact_id].contact
                moved.queue_id, moved.queue_entered_at = move.to_queue_id, now
            for offer in plan.offers:
                w = waiting.pop(offer.contact_id)
                agent = by_id[offer.agent_id]
                # Wrap-up by the queue the offer went through, as the reservation records.
                held = samplers[w.stream]() + queues[offer.queue_id].wrap_up_seconds
                heapq.heappush(events, (now + held, next(order), _DONE, (agent, offer.points)))
                home = streams[w.stream].queue_id
                tally = tallies[home]
                overlap = min(now + held, end) - max(now, start)
                if overlap > 0:
                    tally.busy_points_seconds += offer.points * overlap
                if w.counted:
                    pending -= 1
                    waited = now - w.arrived_at
                    tally.answered += 1
                    tally.wait_answered += waited
                    if waited <= scenario.sl_seconds[home]:
                        tally.within_sl += 1
            wake = plan.next_wake_at
            if wake is not None and wake not in wakes:
                wakes.add(wake)
                heapq.heappush(events, (wake, next(order), _WAKE, None))
            if not plan.more:
                break
        else:
            raise RuntimeError("the routing rounds did not settle (an overflow loop?)")
        free_agents = sum(1 for a in agents if a.used < a.capacity)
    return _measures(scenario, tallies, hours * 3600.0)


def _measures(
    scenario: Scenario, tallies: dict[uuid.UUID, _Tally], window: float
) -> dict[uuid.UUID | None, dict[str, float]]:
    def of(t: _Tally, capacity: float) -> dict[str, float]:
        nan = math.nan
        return {
            "arrivals": float(t.arrivals),
            "service_level": t.within_sl / t.arrivals if t.arrivals else nan,
            "asa_seconds": t.wait_answered / t.answered if t.answered else nan,
            "abandonment_rate": t.abandoned / t.arrivals if t.arrivals else nan,
            "occupancy": t.busy_points_seconds / (capacity * window) if capacity else nan,
        }

    out: dict[uuid.UUID | None, dict[str, float]] = {}
    total = _Tally()
    for qid, t in tallies.items():
        capacity = sum(a.capacity for a in scenario.agents if qid in a.queues)
        out[qid] = of(t, capacity)
        for name in _Tally.__slots__:
            setattr(total, name, getattr(total, name) + getattr(t, name))
    out[None] = of(total, sum(a.capacity for a in scenario.agents))
    return out


@dataclass(frozen=True, slots=True)
class Estimate:
    """A replication mean with its 95 % confidence interval."""

    mean: float
    ci95: tuple[float, float]

    @classmethod
    def of(cls, values: list[float]) -> Estimate | None:
        values = [v for v in values if not math.isnan(v)]
        if not values:
            return None
        mean = statistics.fmean(values)
        if len(values) < 2:
            return cls(mean, (math.nan, math.nan))
        half = t975(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
        return cls(mean, (mean - half, mean + half))

    def as_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "ci95": list(self.ci95)}


def t975(df: int) -> float:
    """The 97.5 % quantile of Student's t (table to 30 df, then Cornish-Fisher)."""
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959963984540054
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


@dataclass(frozen=True, slots=True)
class QueueReport:
    name: str
    arrivals_per_hour: float  # offered
    sl_seconds: float | None
    contacts: float  # counted arrivals per replication, on average
    measures: dict[str, Estimate | None]

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "arrivals_per_hour": self.arrivals_per_hour,
            "contacts_per_replication": self.contacts,
        }
        if self.sl_seconds is not None:
            out["sl_seconds"] = self.sl_seconds
        for key, est in self.measures.items():
            out[key] = est.as_dict() if est is not None else None
        return out


@dataclass(frozen=True, slots=True)
class SimulationReport:
    queues: list[QueueReport]
    overall: QueueReport
    hours: float
    warmup_hours: float
    replications: int
    seed: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "hours": self.hours,
            "warmup_hours": self.warmup_hours,
            "replications": self.replications,
            "seed": self.seed,
            "queues": {q.name: q.as_dict() for q in self.queues},
            "overall": self.overall.as_dict(),
        }


def replication_seeds(seed: int, replications: int) -> list[int]:
    """Independent, reproducible seeds: replication r's seed depends on (seed, r) only."""
    master = random.Random(seed)  # noqa: S311 - reproducible on purpose
    return [master.getrandbits(63) for _ in range(replications)]


def simulate(
    scenario: Scenario,
    *,
    hours: float,
    warmup_hours: float = 1.0,
    replications: int = 10,
    seed: int = 1,
    workers: int = 1,
) -> SimulationReport:
    """Run ``replications`` independent replications and report means with 95 % CIs.
    ``workers`` > 1 runs replications in processes; results do not depend on it."""
    if not math.isfinite(hours) or hours <= 0:
        raise ValueError(f"hours must be above 0, got {hours}")
    if not math.isfinite(warmup_hours) or warmup_hours < 0:
        raise ValueError(f"warm-up hours must be 0 or more, got {warmup_hours}")
    if replications < 2:
        raise ValueError("at least 2 replications are needed for a confidence interval")
    scenario.check()
    seeds = replication_seeds(seed, replications)
    runs: list[dict[uuid.UUID | None, dict[str, float]]]
    if workers > 1:
        with ProcessPoolExecutor(max_workers=min(workers, replications)) as pool:
            futures = [
                pool.submit(run_once, scenario, hours=hours, warmup_hours=warmup_hours, seed=s)
                for s in seeds
            ]
            runs = [f.result() for f in futures]
    else:
        runs = [run_once(scenario, hours=hours, warmup_hours=warmup_hours, seed=s) for s in seeds]

    def report(key: uuid.UUID | None) -> QueueReport:
        offered = sum(s.per_hour for s in scenario.streams if key is None or s.queue_id == key)
        return QueueReport(
            name=scenario.queues[key].name if key is not None else "overall",
            arrivals_per_hour=offered,
            sl_seconds=scenario.sl_seconds[key] if key is not None else None,
            contacts=statistics.fmean(r[key]["arrivals"] for r in runs),
            measures={m: Estimate.of([r[key][m] for r in runs]) for m in METRICS},
        )

    return SimulationReport(
        queues=[report(qid) for qid in scenario.queues],
        overall=report(None),
        hours=hours,
        warmup_hours=warmup_hours,
        replications=replications,
        seed=seed,
    )


def single_queue(
    *,
    arrivals_per_hour: float,
    handle: HandleTime,
    agents: int,
    sl_seconds: float,
    patience_seconds: float | None = None,
    channel: str = "voice",
) -> Scenario:
    """The Erlang setting: one queue, no skills, ``agents`` identical voice agents, no
    wrap-up (the handle time is the whole time an agent is held)."""
    if not isinstance(agents, int) or agents < 1:
        raise ValueError(f"agents must be a whole number of at least 1, got {agents!r}")
    if not math.isfinite(arrivals_per_hour) or arrivals_per_hour <= 0:
        raise ValueError(f"arrivals per hour must be above 0, got {arrivals_per_hour}")
    if not math.isfinite(sl_seconds) or sl_seconds < 0:
        raise ValueError(f"the service-level threshold must be 0 s or more, got {sl_seconds}")
    traffic = arrivals_per_hour / 3600.0 * handle.mean_seconds
    if patience_seconds is None and traffic >= agents:
        raise ValueError(
            f"a load of {traffic:.4g} erlangs needs more than {agents} agents: without a "
            "patience the line grows without bound and there is no steady state to simulate"
        )
    qid = SimId(1)
    queue = QueuePolicy(id=qid, name="queue", required={}, wrap_up_seconds=0.0)
    staff = [
        AgentSpec(
            id=SimId(1_000_000 + i),
            name=f"agent {i + 1}",
            capacity=100,
            skills={},
            queues={qid: (1, 0.0)},
            channel_costs={channel: 100},
        )
        for i in range(agents)
    ]
    stream = ArrivalStream(
        qid, arrivals_per_hour, handle, channel=channel, patience_seconds=patience_seconds
    )
    return Scenario({qid: queue}, {qid: sl_seconds}, [stream], staff)
