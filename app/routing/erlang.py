"""Erlang C (M/M/N) and Erlang A (M/M/N+M): staffing arithmetic for one queue.

Pure functions, no I/O. Both take arrivals per hour, the average handle time (AHT, talk
plus wrap-up: the time an agent is held by one contact) and the service-level threshold
``T`` in seconds, and answer with the same :class:`ErlangResult`, so a planner (and the
simulator's tests) can compare them key for key.

Definitions (the simulator in ``app.routing.simulation`` measures exactly these):

- ``traffic_erlangs``: arrivals per second x AHT.
- ``probability_of_wait``: share of arrivals that find every agent busy (PASTA).
- ``service_level``: share of ALL arrivals answered within ``T`` seconds. Under Erlang A a
  contact that abandons is never "within T", whenever it abandons.
- ``asa_seconds``: average speed of answer, the mean wait of the ANSWERED contacts (those
  answered at once count with 0). Under Erlang C every contact is answered.
- ``occupancy``: share of agent time spent handling contacts (answered traffic / N).
- ``probability_abandon`` (Erlang A only): share of arrivals that hang up before answer.

Numerics: the Erlang B recursion runs in log space (no factorials, no overflow) and stays
exact for thousands of agents. Erlang A solves the birth-death chain of the number in the
system exactly (in log space), truncated where the remaining tail weighs < 1e-20, and
takes the waiting-time law from the closed-form density of the offered wait (derivation in
:func:`erlang_a`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

SECONDS_PER_HOUR = 3600.0
MAX_AGENTS = 100_000
# Erlang A chain: stop when the tail is below e^-46 (~1e-20) of the largest state.
_TAIL_LOG_CUTOFF = 46.0
_MAX_CHAIN_STATES = 2_000_000


@dataclass(frozen=True, slots=True)
class ErlangResult:
    traffic_erlangs: float
    probability_of_wait: float
    service_level: float
    asa_seconds: float
    occupancy: float
    probability_abandon: float | None = None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.probability_abandon is None:
            del out["probability_abandon"]
        return out


def _positive(name: str, value: float) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be greater than 0, got {value:g}")
    return float(value)


def _threshold(sl_seconds: float) -> float:
    if (
        not isinstance(sl_seconds, int | float)
        or isinstance(sl_seconds, bool)
        or not math.isfinite(sl_seconds)
        or sl_seconds < 0
    ):
        raise ValueError(f"sl_seconds must be 0 or more, got {sl_seconds!r}")
    return float(sl_seconds)


def _agents(agents: int) -> int:
    if not isinstance(agents, int) or isinstance(agents, bool) or agents < 1:
        raise ValueError(f"agents must be a whole number of at least 1, got {agents!r}")
    if agents > MAX_AGENTS:
        raise ValueError(f"agents must be at most {MAX_AGENTS}, got {agents}")
    return agents


def log_erlang_b(traffic: float, agents: int) -> float:
    """ln of the Erlang B blocking probability, by the recursion
    B(k) = A B(k-1) / (k + A B(k-1)) carried in logs so that it neither under- nor
    overflows for thousands of agents."""
    log_a = math.log(traffic)
    log_b = 0.0
    for k in range(1, agents + 1):
        # B(k) = A B / (k + A B)  =>  ln B(k) = ln(A B) - ln(k + A B)
        log_ab = log_a + log_b
        log_b = log_ab - math.log(k + math.exp(log_ab))
    return log_b


def _erlang_c_probability(traffic: float, agents: int) -> float:
    b = math.exp(log_erlang_b(traffic, agents))
    return agents * b / (agents - traffic * (1.0 - b))


def erlang_c(
    *, arrivals_per_hour: float, aht_seconds: float, agents: int, sl_seconds: float
) -> ErlangResult:
    """M/M/N with infinite patience. Refuses a load at or above capacity (traffic >= N):
    the queue would grow without bound and no steady state exists."""
    lam = _positive("arrivals_per_hour", arrivals_per_hour) / SECONDS_PER_HOUR
    aht = _positive("aht_seconds", aht_seconds)
    n = _agents(agents)
    t = _threshold(sl_seconds)
    traffic = lam * aht
    if traffic >= n:
        raise ValueError(
            f"a load of {traffic:.4g} erlangs needs more than {n} agents: Erlang C has no "
            "steady state at or above capacity (give a patience for Erlang A, or more agents)"
        )
    pw = _erlang_c_probability(traffic, n)
    return ErlangResult(
        traffic_erlangs=traffic,
        probability_of_wait=pw,
        service_level=1.0 - pw * math.exp(-(n - traffic) * t / aht),
        asa_seconds=pw * aht / (n - traffic),
        occupancy=traffic / n,
    )


def _log_add(x: float, y: float) -> float:
    if x == -math.inf:
        return y
    if y == -math.inf:
        return x
    hi, lo = (x, y) if x >= y else (y, x)
    return hi + math.log1p(math.exp(lo - hi))


def _integrate_log_concave(h: Any, lo: float, hi: float, peak: float) -> tuple[float, float]:
    """(ln scale, integral of exp(h - ln scale)) over [lo, hi] for a concave ``h`` with its
    maximum at ``peak``: adaptive Simpson on the scaled integrand, cut where it is < e^-50."""
    h_peak = h(peak)
    # Past the peak h falls at least as fast as its chord; walk out until negligible.
    end, step = peak, 1e-6 + (hi - lo) * 1e-9
    while end < hi and h(end) > h_peak - 50.0:
        end = min(hi, end + step)
        step *= 2.0
    start, step = peak, 1e-6 + (hi - lo) * 1e-9
    while start > lo and h(start) > h_peak - 50.0:
        start = max(lo, start - step)
        step *= 2.0

    def f(x: float) -> float:
        return math.exp(h(x) - h_peak)

    total = 0.0
    # Split at the peak: each side is monotone, which adaptive Simpson handles well.
    for a, b in ((start, peak), (peak, end)):
        if b <= a:
            continue
        fa, fm, fb = f(a), f((a + b) / 2), f(b)
        stack = [(a, b, fa, fm, fb, (b - a) / 6 * (fa + 4 * fm + fb), 0)]
        while stack:
            x0, x1, f0, f1, f2, whole, depth = stack.pop()
            mid = (x0 + x1) / 2
            fl, fr = f((x0 + mid) / 2), f((mid + x1) / 2)
            left = (mid - x0) / 6 * (f0 + 4 * fl + f1)
            right = (x1 - mid) / 6 * (f1 + 4 * fr + f2)
            if depth > 40 or abs(left + right - whole) <= 1e-12 * max(x1 - x0, 1e-300) * 15:
                total += left + right + (left + right - whole) / 15
            else:
                stack.append((x0, mid, f0, fl, f1, left, depth + 1))
                stack.append((mid, x1, f1, fr, f2, right, depth + 1))
    return h_peak, total


def erlang_a(
    *,
    arrivals_per_hour: float,
    aht_seconds: float,
    agents: int,
    sl_seconds: float,
    patience_seconds: float,
) -> ErlangResult:
    """M/M/N+M: exponential patience with mean ``patience_seconds``; any load is stable.

    The number in the system is a birth-death chain (births lambda; deaths min(n,N) mu +
    max(n-N,0) theta), solved exactly. An arrival that finds j others waiting is answered
    with probability a / (a + (j+1) theta), a = N mu, and, if answered, after a sum of
    exponentials with rates a + i theta (i = 1..j+1): that gives ``probability_abandon``
    and ``asa_seconds`` as exact sums over the chain. Summed over j with the chain's
    weights, the density of the offered wait V (the wait of an infinitely patient
    arrival) on V > 0 is  pi_N a exp(-a t + (lambda/theta)(1 - e^(-theta t))), so
    ``service_level`` = P(n < N) + integral over [0, T] of e^(-theta t) times that density
    (answered within T: offered within T, before its own patience ran out).
    """
    lam = _positive("arrivals_per_hour", arrivals_per_hour) / SECONDS_PER_HOUR
    aht = _positive("aht_seconds", aht_seconds)
    theta = 1.0 / _positive("patience_seconds", patience_seconds)
    n = _agents(agents)
    t_sl = _threshold(sl_seconds)
    mu = 1.0 / aht
    traffic = lam * aht
    a = n * mu

    # Chain weights of the states N + j (j waiting), relative to state N, in logs.
    log_b = log_erlang_b(traffic, n)
    log_u = [0.0]
    peak = 0.0
    j = 0
    while True:
        j += 1
        step = math.log(lam) - math.log(a + j * theta)
        nxt = log_u[-1] + step
        log_u.append(nxt)
        peak = max(peak, nxt)
        if step < 0 and nxt < peak - _TAIL_LOG_CUTOFF:
            break
        if j >= _MAX_CHAIN_STATES:
            raise ValueError(
                "the patience is too long for this load to compute Erlang A exactly; "
                "use Erlang C (no patience) or more agents"
            )
    log_tail = peak + math.log(math.fsum(math.exp(x - peak) for x in log_u))
    one_minus_b = -math.expm1(log_b)
    log_1mb = math.log(one_minus_b) if one_minus_b > 0 else -math.inf
    # Unconditioned: P(n < N) = (1-B)/D, pi_N = B/D, D = (1-B) + B * sum(u).
    log_d = _log_add(log_1mb, log_b + log_tail)
    p_no_wait = math.exp(log_1mb - log_d) if log_1mb > -math.inf else 0.0
    log_pi_n = log_b - log_d

    p_abandon = 0.0
    answered_wait_total = 0.0
    harmonic = 0.0  # sum over i = 1..j+1 of 1 / (a + i theta)
    for j, lu in enumerate(log_u):
        w = math.exp(log_pi_n + lu)
        harmonic += 1.0 / (a + (j + 1) * theta)
        served = a / (a + (j + 1) * theta)
        p_abandon += w * (j + 1) * theta / (a + (j + 1) * theta)
        answered_wait_total += w * served * harmonic
    p_wait = math.exp(log_pi_n + log_tail)
    # Answered traffic over N: every answered contact holds an agent for one AHT.
    occupancy = lam * (1.0 - p_abandon) * aht / n

    within = p_no_wait
    if t_sl > 0 and log_pi_n > -math.inf:
        y = lam / theta

        def h(t: float) -> float:
            return -(a + theta) * t - y * math.expm1(-theta * t)

        top = min(max(math.log(lam / (a + theta)) / theta, 0.0), t_sl)
        log_scale, integral = _integrate_log_concave(h, 0.0, t_sl, top)
        if integral > 0:
            within += math.exp(log_pi_n + math.log(a) + log_scale + math.log(integral))
    p_answered = 1.0 - p_abandon
    return ErlangResult(
        traffic_erlangs=traffic,
        probability_of_wait=p_wait,
        service_level=min(within, p_answered),
        asa_seconds=answered_wait_total / p_answered if p_answered > 0 else math.inf,
        occupancy=occupancy,
        probability_abandon=p_abandon,
    )


def erlang(
    *,
    arrivals_per_hour: float,
    aht_seconds: float,
    agents: int,
    sl_seconds: float,
    patience_seconds: float | None = None,
) -> ErlangResult:
    """Erlang A when a patience is given, else Erlang C."""
    if patience_seconds is None:
        return erlang_c(
            arrivals_per_hour=arrivals_per_hour,
            aht_seconds=aht_seconds,
            agents=agents,
            sl_seconds=sl_seconds,
        )
    return erlang_a(
        arrivals_per_hour=arrivals_per_hour,
        aht_seconds=aht_seconds,
        agents=agents,
        sl_seconds=sl_seconds,
        patience_seconds=patience_seconds,
    )


def agents_needed(
    target_service_level: float,
    *,
    arrivals_per_hour: float,
    aht_seconds: float,
    sl_seconds: float,
    patience_seconds: float | None = None,
) -> int:
    """The smallest number of agents whose service level meets the target (for Erlang C,
    also more agents than the traffic). The service level grows with N, so a binary
    search over N finds it."""
    if (
        not isinstance(target_service_level, int | float)
        or isinstance(target_service_level, bool)
        or not 0 < target_service_level < 1
    ):
        raise ValueError(
            "target_service_level must be a share strictly between 0 and 1 (0.8 = 80 %), "
            f"got {target_service_level!r}: random arrivals never reach 100 %"
        )
    lam = _positive("arrivals_per_hour", arrivals_per_hour) / SECONDS_PER_HOUR
    traffic = lam * _positive("aht_seconds", aht_seconds)
    _threshold(sl_seconds)
    if patience_seconds is not None:
        _positive("patience_seconds", patience_seconds)

    def meets(n: int) -> bool:
        r = erlang(
            arrivals_per_hour=arrivals_per_hour,
            aht_seconds=aht_seconds,
            agents=n,
            sl_seconds=sl_seconds,
            patience_seconds=patience_seconds,
        )
        return r.service_level >= target_service_level

    lo = 1 if patience_seconds is not None else math.floor(traffic) + 1
    if lo > MAX_AGENTS:
        raise ValueError(f"a load of {traffic:.4g} erlangs needs more than {MAX_AGENTS} agents")
    if meets(lo):
        return lo
    hi, step = lo, 1
    while True:
        hi = min(MAX_AGENTS, hi + step)
        if meets(hi):
            break
        if hi == MAX_AGENTS:
            raise ValueError(f"the target needs more than {MAX_AGENTS} agents")
        lo, step = hi, step * 2
    # Invariant: lo fails, hi meets.
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if meets(mid):
            hi = mid
        else:
            lo = mid
    return hi
