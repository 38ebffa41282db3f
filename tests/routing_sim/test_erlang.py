"""Erlang C and Erlang A against published values, closed forms and a brute force."""

from __future__ import annotations

import math

import pytest

from app.routing.erlang import agents_needed, erlang, erlang_a, erlang_c, log_erlang_b


def test_erlang_b_matches_the_tables():
    # Erlang B tables (any teletraffic handbook): 2 erlangs on 5 lines block 3.67 %;
    # 5 erlangs on 10 lines block 1.84 %. By hand: B(5, 2) = (2^5/5!) / sum_k 2^k/k!
    # = 0.26667 / 7.26667 = 0.036697.
    assert math.exp(log_erlang_b(2.0, 5)) == pytest.approx(0.036697, abs=1e-6)
    assert math.exp(log_erlang_b(5.0, 10)) == pytest.approx(0.018385, abs=1e-6)


def test_erlang_c_small_system_by_hand():
    # M/M/3 with 2 erlangs: pi_0 = 1 / (1 + 2 + 2 + (8/6) * 3) = 1/9, so the probability of
    # waiting is (8/6) * 3 * (1/9) = 4/9 and the mean wait is C / (N mu - lambda).
    r = erlang_c(arrivals_per_hour=7200, aht_seconds=1, agents=3, sl_seconds=0.5)
    assert r.traffic_erlangs == pytest.approx(2.0)
    assert r.probability_of_wait == pytest.approx(4 / 9, rel=1e-12)
    assert r.asa_seconds == pytest.approx(4 / 9, rel=1e-12)
    assert r.service_level == pytest.approx(1 - 4 / 9 * math.exp(-0.5), rel=1e-12)
    assert r.occupancy == pytest.approx(2 / 3)


def test_erlang_c_published_worked_examples():
    # The classic worked example (Westbay Engineers, "The Erlang-C formula"): 360 calls per
    # half hour, 4 minute calls, 55 agents, 15 s target: 48 erlangs, occupancy 0.873,
    # probability of waiting 0.2387, ASA 8.2 s, service level 84.6 %.
    r = erlang_c(arrivals_per_hour=720, aht_seconds=240, agents=55, sl_seconds=15)
    assert r.traffic_erlangs == pytest.approx(48.0)
    assert r.occupancy == pytest.approx(0.8727, abs=1e-4)
    assert r.probability_of_wait == pytest.approx(0.2387, abs=1e-4)
    assert r.asa_seconds == pytest.approx(8.18, abs=0.01)
    assert r.service_level == pytest.approx(0.8459, abs=1e-4)
    # The call-centre textbook example: 200 calls/h of 180 s (10 erlangs), 14 agents, 20 s:
    # C = 0.1741, SL = 1 - 0.1741 e^(-4 * 20/180) = 0.8884, ASA = 0.1741 * 180 / 4 = 7.84 s.
    r = erlang_c(arrivals_per_hour=200, aht_seconds=180, agents=14, sl_seconds=20)
    assert r.probability_of_wait == pytest.approx(0.17413, abs=1e-5)
    assert r.service_level == pytest.approx(0.88835, abs=1e-5)
    assert r.asa_seconds == pytest.approx(7.836, abs=1e-3)


def test_erlang_c_is_stable_for_thousands_of_agents():
    # A naive A^N / N! overflows a float past N ~ 170; the log-space recursion does not.
    r = erlang_c(arrivals_per_hour=36_000, aht_seconds=180, agents=1850, sl_seconds=20)
    assert 0 < r.probability_of_wait < 1 and 0.99 < r.service_level < 1
    r = erlang_c(arrivals_per_hour=3600, aht_seconds=1, agents=2000, sl_seconds=20)
    assert r.probability_of_wait == 0.0 and r.service_level == 1.0


def _erlang_a_brute_force(lam, mu, theta, n, t_sl):
    """Independent of erlang_a's closed-form density: the chain solved by plain products,
    and each waiting arrival's chance of answer within T by uniformising the small chain
    "k contacts ahead of me" (served at N mu + k theta, I abandon at theta)."""
    weights = [1.0]
    for k in range(1, n + 60):  # the tail past 60 waiting weighs < 1e-40 here
        weights.append(weights[-1] * lam / (min(k, n) * mu + max(k - n, 0) * theta))
    total = sum(weights)
    pi = [w / total for w in weights]
    within, abandon, wait_answered = sum(pi[:n]), 0.0, 0.0
    rate = n * mu + (len(pi) + 1) * theta
    for j in range(len(pi) - n):
        w = pi[n + j]
        p_served = n * mu / (n * mu + (j + 1) * theta)
        abandon += w * (1 - p_served)
        wait_answered += w * p_served * sum(1 / (n * mu + i * theta) for i in range(1, j + 2))
        # Uniformisation: state = contacts ahead (j..0), then "answered"; leaks = abandon.
        state = [0.0] * (j + 1)
        state[j] = 1.0
        answered, term, poisson = 0.0, 0, math.exp(-rate * t_sl)
        got = 0.0
        while term < rate * t_sl + 60:
            got += poisson * answered
            nxt = [0.0] * (j + 1)
            for k, p in enumerate(state):
                if p == 0.0:
                    continue
                down = n * mu + k * theta
                nxt[k] += p * (1 - (down + theta) / rate)
                if k == 0:
                    answered += p * down / rate
                else:
                    nxt[k - 1] += p * down / rate
            state = nxt
            term += 1
            poisson *= rate * t_sl / term
        within += w * got
    return within, abandon, wait_answered / (1 - abandon)


def test_erlang_a_matches_a_brute_force():
    lam, aht, patience, n, t_sl = 30.0, 300.0, 120.0, 3, 20.0  # 2.5 erlangs on 3 agents
    r = erlang_a(
        arrivals_per_hour=lam, aht_seconds=aht, agents=n, sl_seconds=t_sl, patience_seconds=patience
    )
    within, abandon, asa = _erlang_a_brute_force(lam / 3600, 1 / aht, 1 / patience, n, t_sl)
    assert r.probability_abandon == pytest.approx(abandon, rel=1e-9)
    assert r.asa_seconds == pytest.approx(asa, rel=1e-9)
    assert r.service_level == pytest.approx(within, abs=1e-9)


def test_erlang_a_patience_equal_to_handle_time_is_a_poisson_system():
    # With theta = mu every contact in the system leaves at rate mu whether waiting or
    # served, so the number in the system is Poisson(A) (the M/M/infinity law):
    # P(wait) = P(Poisson(A) >= N) and P(abandon) = E[(n - N)+] / A.
    a, n = 8.0, 8
    r = erlang_a(
        arrivals_per_hour=160, aht_seconds=180, agents=n, sl_seconds=20, patience_seconds=180
    )
    pmf = [math.exp(-a + k * math.log(a) - math.lgamma(k + 1)) for k in range(200)]
    assert r.probability_of_wait == pytest.approx(sum(pmf[n:]), rel=1e-9)
    assert r.probability_abandon == pytest.approx(
        sum((k - n) * p for k, p in enumerate(pmf) if k > n) / a, rel=1e-9
    )
    assert r.occupancy == pytest.approx(a * (1 - r.probability_abandon) / n)


def test_erlang_a_tends_to_erlang_c_as_patience_grows_and_is_consistent():
    c = erlang_c(arrivals_per_hour=200, aht_seconds=180, agents=14, sl_seconds=20)
    a = erlang_a(
        arrivals_per_hour=200, aht_seconds=180, agents=14, sl_seconds=20, patience_seconds=1e8
    )
    assert a.service_level == pytest.approx(c.service_level, abs=1e-5)
    assert a.asa_seconds == pytest.approx(c.asa_seconds, rel=1e-4)
    assert a.probability_of_wait == pytest.approx(c.probability_of_wait, rel=1e-4)
    # Answered within a very long threshold = every answered contact = 1 - P(abandon).
    r = erlang_a(
        arrivals_per_hour=400, aht_seconds=180, agents=14, sl_seconds=1e6, patience_seconds=120
    )
    assert r.service_level == pytest.approx(1 - r.probability_abandon, abs=1e-9)


def test_erlang_a_handles_overload_and_size():
    # 20 erlangs on 14 agents: no Erlang C answer, but impatience keeps it stable.
    r = erlang_a(
        arrivals_per_hour=400, aht_seconds=180, agents=14, sl_seconds=20, patience_seconds=120
    )
    assert r.occupancy < 1 and 0.25 < r.probability_abandon < 0.4
    r = erlang_a(
        arrivals_per_hour=36_000, aht_seconds=180, agents=1800, sl_seconds=20, patience_seconds=300
    )
    assert 0 < r.probability_abandon < 0.05 and 0.9 < r.service_level < 1


def test_agents_needed_is_the_smallest_that_meets_the_target():
    # The textbook example: 10 erlangs need 14 agents for 80/20 (13 give 0.7956).
    n = agents_needed(0.8, arrivals_per_hour=200, aht_seconds=180, sl_seconds=20)

    def sl(k: int) -> float:
        return erlang(arrivals_per_hour=200, aht_seconds=180, agents=k, sl_seconds=20).service_level

    assert sl(n) >= 0.8 > sl(n - 1)
    assert agents_needed(0.8, arrivals_per_hour=720, aht_seconds=240, sl_seconds=15) == 55
    # Erlang C needs more than the traffic even for a tiny target.
    assert agents_needed(0.01, arrivals_per_hour=200, aht_seconds=180, sl_seconds=20) == 11
    # With abandonment fewer agents reach the same target (impatient callers leave).
    na = agents_needed(
        0.8, arrivals_per_hour=200, aht_seconds=180, sl_seconds=20, patience_seconds=60
    )
    assert na < n
    sla = erlang(
        arrivals_per_hour=200, aht_seconds=180, agents=na, sl_seconds=20, patience_seconds=60
    )
    assert sla.service_level >= 0.8
    big = agents_needed(0.9, arrivals_per_hour=36_000, aht_seconds=180, sl_seconds=20)
    assert 1800 < big < 1900


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"arrivals_per_hour": 200, "agents": 10}, "no steady state at or above capacity"),
        ({"arrivals_per_hour": 200, "agents": 9}, "needs more than 9 agents"),
        ({"arrivals_per_hour": 0}, "arrivals_per_hour must be greater than 0"),
        ({"arrivals_per_hour": -5}, "arrivals_per_hour must be greater than 0"),
        ({"aht_seconds": 0}, "aht_seconds must be greater than 0"),
        ({"aht_seconds": math.inf}, "aht_seconds must be a finite number"),
        ({"agents": 0}, "agents must be a whole number of at least 1"),
        ({"agents": 2.5}, "agents must be a whole number"),
        ({"sl_seconds": -1}, "sl_seconds must be 0 or more"),
        ({"patience_seconds": 0}, "patience_seconds must be greater than 0"),
    ],
)
def test_refusals(kwargs, message):
    args = {"arrivals_per_hour": 100, "aht_seconds": 180, "agents": 10, "sl_seconds": 20}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        erlang(**args)


@pytest.mark.parametrize("target", [0, 1, 1.2, -0.1, math.nan])
def test_agents_needed_refuses_targets_that_are_not_a_share(target):
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        agents_needed(target, arrivals_per_hour=100, aht_seconds=180, sl_seconds=20)
