"""The simulator, running the real routing policy, agrees with Erlang C and Erlang A.

Each comparison asks that the formula's value lie inside the simulator's 95 % confidence
interval (independent replications, fixed seeds, so the outcome is deterministic), and
that the interval be narrow enough for that to mean something. With 95 % intervals about
one comparison in twenty misses by chance for a correct simulator; the seeds here are
the first ones tried (seed 1), not picked among many.
"""

from __future__ import annotations

import math
import random
import uuid

import pytest

from app.routing.erlang import erlang
from app.routing.policy import QueuePolicy, Step
from app.routing.simulation import (
    AgentSpec,
    ArrivalStream,
    HandleTime,
    Scenario,
    SimulationReport,
    run_once,
    simulate,
    single_queue,
)

AHT = 180.0
SL = 20.0


def _run(agents: int, per_hour: float, patience: float | None, hours: float) -> SimulationReport:
    scenario = single_queue(
        arrivals_per_hour=per_hour,
        handle=HandleTime(AHT),
        agents=agents,
        sl_seconds=SL,
        patience_seconds=patience,
    )
    return simulate(scenario, hours=hours, warmup_hours=2, replications=10, seed=1, workers=2)


def _inside(report: SimulationReport, key: str, value: float, max_half_width: float) -> None:
    est = report.overall.measures[key]
    assert est is not None
    lo, hi = est.ci95
    assert lo <= value <= hi, f"{key}: formula {value:.4f} outside [{lo:.4f}, {hi:.4f}]"
    assert (hi - lo) / 2 <= max_half_width, f"{key}: interval too wide to mean much"


@pytest.mark.parametrize(
    ("agents", "per_hour", "asa_width"),
    [
        (10, 100.0, 0.5),  # 5 erlangs on 10 agents: occupancy 0.50
        (10, 160.0, 5.0),  # 8 erlangs on 10 agents: occupancy 0.80
        (15, 279.0, 25.0),  # 13.95 erlangs on 15 agents: occupancy 0.93
    ],
    ids=["light", "medium", "heavy"],
)
def test_agrees_with_erlang_c(agents, per_hour, asa_width):
    report = _run(agents, per_hour, None, hours=100)
    formula = erlang(arrivals_per_hour=per_hour, aht_seconds=AHT, agents=agents, sl_seconds=SL)
    _inside(report, "service_level", formula.service_level, 0.025)
    _inside(report, "asa_seconds", formula.asa_seconds, asa_width)
    _inside(report, "occupancy", formula.occupancy, 0.01)
    assert report.overall.measures["abandonment_rate"].mean == 0.0  # type: ignore[union-attr]
    # Warm-up excluded: the counted arrivals are those of the measured 100 hours.
    assert report.overall.contacts == pytest.approx(per_hour * 100, rel=0.03)
    if per_hour == 160.0:
        # The comparison discriminates: one agent more is clearly not what was simulated.
        better = erlang(arrivals_per_hour=per_hour, aht_seconds=AHT, agents=11, sl_seconds=SL)
        lo, hi = report.overall.measures["service_level"].ci95  # type: ignore[union-attr]
        assert not lo <= better.service_level <= hi


@pytest.mark.parametrize(
    ("agents", "per_hour", "patience"),
    [
        (10, 190.0, 120.0),  # 9.5 erlangs offered to 10 agents, 2 minutes of patience
        (10, 240.0, 180.0),  # 12 erlangs offered to 10 agents: overloaded, kept stable
    ],
    ids=["busy", "overloaded"],
)
def test_agrees_with_erlang_a(agents, per_hour, patience):
    report = _run(agents, per_hour, patience, hours=100)
    formula = erlang(
        arrivals_per_hour=per_hour,
        aht_seconds=AHT,
        agents=agents,
        sl_seconds=SL,
        patience_seconds=patience,
    )
    assert formula.probability_abandon is not None
    _inside(report, "service_level", formula.service_level, 0.015)
    _inside(report, "asa_seconds", formula.asa_seconds, 1.0)
    _inside(report, "abandonment_rate", formula.probability_abandon, 0.01)
    _inside(report, "occupancy", formula.occupancy, 0.01)


def test_same_seed_same_numbers_whatever_the_workers():
    scenario = single_queue(arrivals_per_hour=150, handle=HandleTime(AHT), agents=9, sl_seconds=SL)
    one = simulate(scenario, hours=3, warmup_hours=0.5, replications=3, seed=5, workers=1)
    two = simulate(scenario, hours=3, warmup_hours=0.5, replications=3, seed=5, workers=2)
    assert one.as_dict() == two.as_dict()
    other = simulate(scenario, hours=3, warmup_hours=0.5, replications=3, seed=6)
    assert other.as_dict() != one.as_dict()


def test_lognormal_handle_times_keep_the_mean_and_change_the_waits():
    h = HandleTime(AHT, "lognormal", cv=0.5)
    draw = h.sampler(random.Random(3))
    xs = [draw() for _ in range(200_000)]
    mean = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / len(xs))
    assert mean == pytest.approx(AHT, rel=0.01)
    assert sd / mean == pytest.approx(0.5, rel=0.03)
    # Less variable handle times than exponential: the same staff answers faster than
    # Erlang C predicts (it assumes cv = 1), while occupancy depends on the mean only.
    scenario = single_queue(arrivals_per_hour=160, handle=h, agents=10, sl_seconds=SL)
    report = simulate(scenario, hours=40, warmup_hours=2, replications=6, seed=1, workers=2)
    formula = erlang(arrivals_per_hour=160, aht_seconds=AHT, agents=10, sl_seconds=SL)
    assert report.overall.measures["service_level"].ci95[0] > formula.service_level  # type: ignore[union-attr]
    _inside(report, "occupancy", formula.occupancy, 0.02)


def _agent(i: int, queues: dict[uuid.UUID, tuple[int, float]], skills=None) -> AgentSpec:
    return AgentSpec(
        id=uuid.UUID(int=500 + i),
        name=f"a{i}",
        capacity=100,
        skills=skills or {},
        queues=queues,
        channel_costs={"voice": 100},
    )


def test_relaxation_steps_fall_due_on_the_virtual_clock():
    # Nobody holds the skill at 3; after 30 s the minimum drops to 1 and the contact is
    # offered at that moment (a wake-up, not the next arrival or completion).
    skill = uuid.UUID(int=77)
    qid = uuid.UUID(int=1)
    queue = QueuePolicy(
        qid,
        "q",
        required={skill: 3},
        steps=[Step(after_seconds=30, action="lower_minimum", skill_id=skill, to=1)],
        wrap_up_seconds=10,
    )
    agents = [_agent(i, {qid: (1, 0.0)}, {skill: 1}) for i in range(6)]
    stream = ArrivalStream(qid, 20.0, HandleTime(AHT))
    scenario = Scenario({qid: queue}, {qid: SL}, [stream], agents)
    out = run_once(scenario, hours=20, warmup_hours=1, seed=2)[qid]
    assert out["service_level"] == 0.0
    assert 30.0 <= out["asa_seconds"] < 30.5  # 1 erlang on 6 agents: rarely anyone busy


def test_profile_priority_serves_the_first_queue_first():
    first, second = uuid.UUID(int=1), uuid.UUID(int=2)
    queues = {q: QueuePolicy(q, n, required={}) for q, n in ((first, "first"), (second, "second"))}
    for q in queues.values():
        q.wrap_up_seconds = 0.0
    agents = [_agent(i, {first: (1, 0.0), second: (2, 0.0)}) for i in range(10)]
    streams = [ArrivalStream(q, 85.0, HandleTime(AHT)) for q in (first, second)]
    scenario = Scenario(queues, {first: SL, second: SL}, streams, agents)
    report = simulate(scenario, hours=20, warmup_hours=1, replications=4, seed=1, workers=2)
    by_name = {q.name: q for q in report.queues}
    assert (
        by_name["first"].measures["asa_seconds"].ci95[1]  # type: ignore[union-attr]
        < by_name["second"].measures["asa_seconds"].ci95[0]  # type: ignore[union-attr]
    )
    # Occupancy: each queue's share of the agents that serve it; together, all of it.
    total = sum(q.measures["occupancy"].mean for q in report.queues)  # type: ignore[union-attr]
    assert total == pytest.approx(report.overall.measures["occupancy"].mean)  # type: ignore[union-attr]


def test_overflow_after_max_wait_moves_contacts_even_when_nobody_is_free():
    # Nobody serves "front"; after 45 s there, contacts move to "back", which is staffed.
    front, back = uuid.UUID(int=1), uuid.UUID(int=2)
    queues = {
        front: QueuePolicy(
            front, "front", required={}, overflow_queue_id=back, max_wait_seconds=45
        ),
        back: QueuePolicy(back, "back", required={}, wrap_up_seconds=0),
    }
    agents = [_agent(i, {back: (1, 0.0)}) for i in range(4)]
    scenario = Scenario(
        queues, {front: 60.0, back: 60.0}, [ArrivalStream(front, 30.0, HandleTime(AHT))], agents
    )
    out = run_once(scenario, hours=20, warmup_hours=1, seed=4)
    assert out[front]["asa_seconds"] >= 45.0
    assert out[front]["service_level"] > 0.5  # most are answered soon after the move
    assert math.isnan(out[back]["service_level"])  # nobody arrived there


def test_refuses_what_it_cannot_simulate():
    with pytest.raises(ValueError, match="no steady state"):
        single_queue(arrivals_per_hour=200, handle=HandleTime(AHT), agents=10, sl_seconds=SL)
    with pytest.raises(ValueError, match="lognormal"):
        HandleTime(AHT, "gamma")
    qid, other = uuid.UUID(int=1), uuid.UUID(int=2)
    scenario = Scenario(
        {qid: QueuePolicy(qid, "orphan", required={})},
        {qid: SL},
        [ArrivalStream(qid, 10.0, HandleTime(AHT))],
        [_agent(0, {other: (1, 0.0)})],
    )
    with pytest.raises(ValueError, match="no agent serves queue 'orphan' on voice"):
        simulate(scenario, hours=1, replications=2)
    # Queued for a skill nobody holds at that level, and no relaxation step lowers it.
    skill = uuid.UUID(int=77)
    scenario.agents = [_agent(0, {qid: (1, 0.0)}, {skill: 2})]
    scenario.queues[qid].required = {skill: 4}
    with pytest.raises(ValueError, match="with the skills it needs"):
        simulate(scenario, hours=1, replications=2)
    scenario.queues[qid].steps = [Step(after_seconds=60, action="drop_skill", skill_id=skill)]
    # Servable now, but 10 contacts/h of 180 s with one agent is 0.5 erlangs: it runs.
    assert simulate(scenario, hours=1, replications=2).overall.contacts > 0
    scenario.streams = [ArrivalStream(qid, 25.0, HandleTime(AHT))]  # 1.25 erlangs, 1 agent
    with pytest.raises(ValueError, match="does not fit the 100 points staffed"):
        simulate(scenario, hours=1, replications=2)
    ok = single_queue(arrivals_per_hour=10, handle=HandleTime(AHT), agents=2, sl_seconds=SL)
    with pytest.raises(ValueError, match="at least 2 replications"):
        simulate(ok, hours=1, replications=1)
    with pytest.raises(ValueError, match="hours must be above 0"):
        simulate(ok, hours=0)
