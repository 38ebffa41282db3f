"""The pure routing policy: the decisions the router, explanations and simulator share."""

from __future__ import annotations

import uuid

from app.routing.policy import (
    AgentSnapshot,
    FitScorer,
    QueuePolicy,
    Step,
    WaitingContact,
    explain_contact,
    plan_round,
    requirement,
)

NOW = 10_000.0
COSTS = {"voice": 100, "chat": 34, "email": 20}


def _id() -> uuid.UUID:
    return uuid.uuid4()


def queue(**kw) -> QueuePolicy:
    return QueuePolicy(
        id=kw.pop("id", _id()), name=kw.pop("name", "Q"), required=kw.pop("required", {}), **kw
    )


def agent(queues, *, skills=None, used=0, idle=100.0, capacity=100, name="") -> AgentSnapshot:
    return AgentSnapshot(
        id=_id(),
        capacity=capacity,
        used=used,
        idle_since=NOW - idle,
        skills=skills or {},
        queues=queues,
        channel_costs=dict(COSTS),
        name=name,
    )


def contact(q, *, channel="chat", priority=5, waited=10.0, **kw) -> WaitingContact:
    entered = kw.pop("entered", NOW - waited)
    return WaitingContact(
        id=_id(),
        queue_id=q.id,
        channel=channel,
        priority=priority,
        enqueued_at=kw.pop("enqueued", entered),
        queue_entered_at=entered,
        **kw,
    )


def test_priority_then_place_in_line_and_longest_idle():
    q = queue()
    a = agent({q.id: (1, 0)}, capacity=34)
    old = contact(q, waited=50)
    new_urgent = contact(q, waited=5, priority=1)
    plan = plan_round(NOW, {q.id: q}, [old, new_urgent], [a])
    assert [o.contact_id for o in plan.offers] == [new_urgent.id]

    b1, b2 = agent({q.id: (1, 0)}, idle=5), agent({q.id: (1, 0)}, idle=500)
    plan = plan_round(NOW, {q.id: q}, [contact(q)], [b1, b2])
    assert plan.offers[0].agent_id == b2.id and plan.offers[0].why["rule"] == "longest_idle"


def test_skills_minimum_and_relaxation_over_time():
    billing = _id()
    q = queue(
        required={billing: 4},
        steps=[Step(after_seconds=30, action="lower_minimum", skill_id=billing, to=2)],
    )
    junior = agent({q.id: (1, 0)}, skills={billing: 2})
    early = contact(q, waited=10)
    plan = plan_round(NOW, {q.id: q}, [early], [junior])
    assert plan.offers == [] and plan.next_wake_at == early.queue_entered_at + 30
    why = explain_contact(NOW, {q.id: q}, early, [junior])
    assert why["agents"][0]["code"] == "low-proficiency"
    late = contact(q, waited=31)
    plan = plan_round(NOW, {q.id: q}, [late], [junior])
    assert [o.agent_id for o in plan.offers] == [junior.id]
    assert plan.offers[0].why["steps_applied"][0]["action"] == "lower_minimum"
    # The contact's own extra skills are not relaxed.
    spanish = _id()
    extra = contact(q, waited=100, extra_skills={spanish: 3})
    assert requirement(q, extra, NOW).skills == {billing: 2, spanish: 3}


def test_sticky_agent_is_exclusive_until_the_timeout():
    q = queue(sticky_timeout_seconds=60)
    last, other = agent({q.id: (1, 0)}, idle=1), agent({q.id: (1, 0)}, idle=999)
    c = contact(q, waited=10, sticky_agent_id=last.id)
    plan = plan_round(NOW, {q.id: q}, [c], [last, other])
    assert plan.offers[0].agent_id == last.id and plan.offers[0].why["rule"] == "sticky"
    # The sticky agent is busy: the contact waits for them until the timeout...
    plan = plan_round(NOW, {q.id: q}, [c], [other])
    assert plan.offers == [] and plan.next_wake_at == c.queue_entered_at + 60
    # ...then anyone may take it.
    c2 = contact(q, waited=61, sticky_agent_id=last.id)
    assert plan_round(NOW, {q.id: q}, [c2], [other]).offers[0].agent_id == other.id


def test_preferred_agents_first_but_not_exclusively():
    q = queue()
    fav, other = agent({q.id: (1, 0)}, idle=1), agent({q.id: (1, 0)}, idle=999)
    c = contact(q, preferred_agent_ids=(fav.id,))
    assert plan_round(NOW, {q.id: q}, [c], [fav, other]).offers[0].agent_id == fav.id
    c2 = contact(q, preferred_agent_ids=(fav.id,))
    assert plan_round(NOW, {q.id: q}, [c2], [other]).offers[0].agent_id == other.id


def test_an_agent_who_declined_is_not_reoffered_at_once():
    q = queue()
    a = agent({q.id: (1, 0)})
    c = contact(q, declined_by=a.id, declined_at=NOW - 5)
    plan = plan_round(NOW, {q.id: q}, [c], [a])
    assert plan.offers == [] and plan.next_wake_at == NOW + 25


def test_profile_priority_picks_the_queue_and_respects_delays():
    q1, q2 = queue(name="first"), queue(name="second")
    a = agent({q1.id: (1, 0), q2.id: (2, 0)}, capacity=34)
    older_in_q2 = contact(q2, waited=100)
    newer_in_q1 = contact(q1, waited=1)
    plan = plan_round(NOW, {q1.id: q1, q2.id: q2}, [older_in_q2, newer_in_q1], [a])
    assert [o.contact_id for o in plan.offers] == [newer_in_q1.id]
    # q1 only after 60 s: the q1 contact that waited 1 s is not this agent's yet.
    b = agent({q1.id: (1, 60), q2.id: (2, 0)}, capacity=34)
    plan = plan_round(NOW, {q1.id: q1, q2.id: q2}, [older_in_q2, newer_in_q1], [b])
    assert [o.contact_id for o in plan.offers] == [older_in_q2.id]
    assert plan.offers[0].queue_id == q2.id


def test_overflow_step_reaches_the_target_queue_through_its_open_queue():
    q1, q2 = queue(name="first"), queue(name="second")
    q1.steps = [Step(after_seconds=10, action="add_overflow", target_queue_id=q2.id)]
    a = agent({q1.id: (1, 60), q2.id: (2, 0)}, capacity=34)
    c = contact(q1, waited=20)
    plan = plan_round(NOW, {q1.id: q1, q2.id: q2}, [c], [a])
    assert plan.offers[0].queue_id == q2.id  # q1's delay has not passed for this agent


def test_max_wait_moves_to_the_overflow_queue():
    q2 = queue(name="overflow")
    q1 = queue(name="main", max_wait_seconds=60, overflow_queue_id=q2.id)
    c = contact(q1, waited=61)
    plan = plan_round(NOW, {q1.id: q1, q2.id: q2}, [c], [])
    assert [(m.contact_id, m.to_queue_id) for m in plan.moves] == [(c.id, q2.id)]
    assert plan.more  # the moved contact is matched in the next round


def test_capacity_is_shared_across_channels_and_a_call_is_not_starved_by_chats():
    q = queue()
    a = agent({q.id: (1, 0)}, used=34)  # one chat already
    chats = [contact(q, waited=5 - i) for i in range(3)]
    plan = plan_round(NOW, {q.id: q}, chats, [a])
    assert len(plan.offers) == 1 and a.used == 68  # 66 free: one more chat, not two
    # A call waits ahead of newer chats: the agent takes no more chats until it fits.
    b = agent({q.id: (1, 0)}, used=34)
    call = contact(q, channel="voice", waited=30)
    plan = plan_round(NOW, {q.id: q}, [call, *chats], [b])
    assert plan.offers == [] and b.used == 34
    # With a second, idle agent the call goes there and chats flow to the first.
    c = agent({q.id: (1, 0)})
    plan = plan_round(NOW, {q.id: q}, [call, *chats], [b, c])
    assert {o.contact_id: o.agent_id for o in plan.offers}[call.id] == c.id
    assert sum(o.agent_id == b.id for o in plan.offers) == 1


def test_most_skilled_and_best_score():
    billing, spanish = _id(), _id()
    q = queue(required={billing: 1}, selection="most_skilled")
    weak = agent({q.id: (1, 0)}, skills={billing: 2}, idle=999)
    strong = agent({q.id: (1, 0)}, skills={billing: 5}, idle=1)
    assert plan_round(NOW, {q.id: q}, [contact(q)], [weak, strong]).offers[0].agent_id == strong.id

    q.selection = "best_score"
    es = agent({q.id: (1, 0)}, skills={billing: 2, spanish: 3}, idle=1)
    es.skill_names = {billing: "Billing", spanish: "Spanish"}
    en = agent({q.id: (1, 0)}, skills={billing: 2}, idle=999)
    en.skill_names = {billing: "Billing"}
    c = contact(q, attributes={"language": "spanish"})
    plan = plan_round(NOW, {q.id: q}, [c], [en, es])
    assert plan.offers[0].agent_id == es.id and plan.offers[0].why["scorer"] == "fit"
    # A valuable customer gets the most proficient agent; others the closest fit.
    scorer = FitScorer()
    need = requirement(q, c, NOW)
    vip = contact(q, attributes={"tier": "VIP"})
    assert scorer.score(vip, strong, need, NOW) > scorer.score(vip, weak, need, NOW)
    plain = contact(q)
    assert scorer.score(plain, weak, need, NOW) > scorer.score(plain, strong, need, NOW)


def test_offer_cap_per_round_asks_for_another_round():
    q = queue()
    agents = [agent({q.id: (1, 0)}) for _ in range(5)]
    line = [contact(q, waited=100 - i) for i in range(5)]
    plan = plan_round(NOW, {q.id: q}, line, agents, max_offers=2)
    assert len(plan.offers) == 2 and plan.more
    assert [o.contact_id for o in plan.offers] == [line[0].id, line[1].id]


def test_the_agent_held_for_a_call_is_named_in_the_plan():
    q = queue()
    b = agent({q.id: (1, 0)}, used=34)
    call = contact(q, channel="voice", waited=30)
    chat = contact(q, waited=5)
    plan = plan_round(NOW, {q.id: q}, [call, chat], [b])
    assert plan.offers == [] and plan.held == {b.id: call.id}


def test_a_contact_newer_than_the_rounds_clock_is_matched_through_its_queue():
    # Read after the round took its time: "waited" is a hair below zero.
    q1, q2 = queue(name="vip"), queue(name="general")
    a = agent({q1.id: (1, 0), q2.id: (2, 0)}, capacity=34)
    older = contact(q2, waited=5)
    fresh = contact(q1, waited=-0.002)
    plan = plan_round(NOW, {q1.id: q1, q2.id: q2}, [older, fresh], [a])
    assert [(o.contact_id, o.queue_id) for o in plan.offers] == [(fresh.id, q1.id)]
