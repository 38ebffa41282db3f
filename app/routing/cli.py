"""Routing commands of the `switchboard` CLI: erlang, simulate (and router, in app.cli)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

USAGE_ERROR = 2  # bad or conflicting flags, as click reports its own usage errors


_FLAGS = re.compile(
    r"\b(arrivals_per_hour|aht_seconds|sl_seconds|patience_seconds|"
    r"target_service_level)\b|^agents\b"
)


def _refuse(message: str) -> NoReturn:
    # The formulas name their arguments; say the flag the user typed instead.
    message = _FLAGS.sub(lambda m: "--" + m.group(0).replace("_", "-"), message)
    typer.secho(f"switchboard: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(USAGE_ERROR)


def _pairs(values: list[str] | None, flag: str) -> dict[str, float]:
    """NAME=NUMBER flags (the name may hold spaces or '='; the number follows the last)."""
    out: dict[str, float] = {}
    for raw in values or []:
        name, sep, number = raw.rpartition("=")
        try:
            value = float(number)
        except ValueError:
            value = math.nan
        if not sep or not name.strip() or not math.isfinite(value) or value < 0:
            _refuse(f"{flag} takes NAME=NUMBER with a number of 0 or more, got '{raw}'")
        out[name.strip()] = value
    return out


def _fmt(value: float) -> str:
    return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"


def erlang(
    arrivals_per_hour: Annotated[float, typer.Option(help="Contacts offered per hour")],
    aht_seconds: Annotated[float, typer.Option(help="Average handle time incl. wrap-up")],
    sl_seconds: Annotated[float, typer.Option(help="Service-level threshold")] = 20.0,
    agents: Annotated[int | None, typer.Option(help="Agents staffed")] = None,
    target_service_level: Annotated[
        float | None,
        typer.Option(help="Instead of --agents: find the fewest agents reaching this (0.8)"),
    ] = None,
    patience_seconds: Annotated[
        float | None, typer.Option(help="Mean patience: Erlang A (with abandonment)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Erlang C (or Erlang A with --patience-seconds): service level, ASA, occupancy."""
    from app.routing import erlang as formulas

    if (agents is None) == (target_service_level is None):
        _refuse("give exactly one of --agents and --target-service-level")
    try:
        needed = None
        if target_service_level is not None:
            needed = formulas.agents_needed(
                target_service_level,
                arrivals_per_hour=arrivals_per_hour,
                aht_seconds=aht_seconds,
                sl_seconds=sl_seconds,
                patience_seconds=patience_seconds,
            )
        staffed = needed if needed is not None else agents
        assert staffed is not None
        result = formulas.erlang(
            arrivals_per_hour=arrivals_per_hour,
            aht_seconds=aht_seconds,
            agents=staffed,
            sl_seconds=sl_seconds,
            patience_seconds=patience_seconds,
        )
    except ValueError as exc:
        _refuse(str(exc))
    out: dict[str, Any] = {"model": "erlang_a" if patience_seconds else "erlang_c"}
    if needed is not None:
        out["agents_needed"] = needed
    else:
        out["agents"] = staffed
    out |= result.as_dict()
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    for key, value in out.items():
        typer.echo(f"{key}: {_fmt(value) if isinstance(value, float) else value}")


def simulate(
    aht_seconds: Annotated[float, typer.Option(help="Mean handle time (wrap-up apart)")],
    arrivals_per_hour: Annotated[
        float | None,
        typer.Option(help="Contacts per hour (with --blueprint: split evenly over queues)"),
    ] = None,
    agents: Annotated[int | None, typer.Option(help="Agents (single-queue mode)")] = None,
    sl_seconds: Annotated[
        float | None, typer.Option(help="Service-level threshold (single queue; default 20)")
    ] = None,
    patience_seconds: Annotated[
        float | None, typer.Option(help="Mean (exponential) patience; none: nobody abandons")
    ] = None,
    handle_time_distribution: Annotated[
        str, typer.Option(help="exponential | lognormal")
    ] = "exponential",
    handle_time_cv: Annotated[
        float | None, typer.Option(help="Lognormal: standard deviation / mean (default 1)")
    ] = None,
    hours: Annotated[float, typer.Option(help="Measured hours per replication")] = 8.0,
    warmup_hours: Annotated[float, typer.Option(help="Hours simulated before measuring")] = 1.0,
    replications: Annotated[int, typer.Option(help="Independent runs (for the 95 % CI)")] = 10,
    seed: Annotated[int, typer.Option(help="Same seed, same numbers")] = 1,
    workers: Annotated[int, typer.Option(help="Processes running replications")] = 1,
    blueprint: Annotated[
        Path | None, typer.Option(help="A tenant blueprint (YAML): its queues and agents")
    ] = None,
    queue_arrivals_per_hour: Annotated[
        list[str] | None, typer.Option(help="With --blueprint: NAME=RATE, repeatable")
    ] = None,
    queue_aht_seconds: Annotated[
        list[str] | None, typer.Option(help="With --blueprint: NAME=SECONDS, repeatable")
    ] = None,
    agent_copies: Annotated[
        int, typer.Option(help="With --blueprint: staff each agent this many times")
    ] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Simulate the routing policy: service level, ASA, abandonment and occupancy with
    95 % confidence intervals, per queue and overall."""
    from app.routing import simulation as sim

    if handle_time_distribution == "exponential" and handle_time_cv not in (None, 1.0):
        _refuse("--handle-time-cv applies to --handle-time-distribution lognormal only")
    if workers < 1:
        _refuse("--workers must be at least 1")
    try:
        handle = sim.HandleTime(aht_seconds, handle_time_distribution, handle_time_cv or 1.0)
        if blueprint is None:
            if queue_arrivals_per_hour or queue_aht_seconds or agent_copies != 1:
                _refuse("the per-queue flags and --agent-copies need --blueprint")
            if agents is None or arrivals_per_hour is None:
                _refuse("give --agents and --arrivals-per-hour (or a --blueprint)")
            scenario = sim.single_queue(
                arrivals_per_hour=arrivals_per_hour,
                handle=handle,
                agents=agents,
                sl_seconds=20.0 if sl_seconds is None else sl_seconds,
                patience_seconds=patience_seconds,
            )
        else:
            from app.routing import simulation_blueprint as sb

            if agents is not None or sl_seconds is not None:
                _refuse(
                    "with --blueprint the agents and each queue's service-level threshold "
                    "come from the blueprint (use --agent-copies to scale the staff)"
                )
            scenario = sb.scenario_from_blueprint(
                sb.read_blueprint(blueprint),
                handle=handle,
                queue_arrivals_per_hour=_pairs(queue_arrivals_per_hour, "--queue-arrivals-per-hour")
                or None,
                arrivals_per_hour=arrivals_per_hour,
                queue_handle={
                    name: sim.HandleTime(s, handle_time_distribution, handle_time_cv or 1.0)
                    for name, s in _pairs(queue_aht_seconds, "--queue-aht-seconds").items()
                },
                patience_seconds=patience_seconds,
                agent_copies=agent_copies,
            )
        report = sim.simulate(
            scenario,
            hours=hours,
            warmup_hours=warmup_hours,
            replications=replications,
            seed=seed,
            workers=workers,
        )
    except ValueError as exc:
        _refuse(str(exc))
    out = report.as_dict()
    out["handle_time"] = {
        "distribution": handle.distribution,
        "mean_seconds": handle.mean_seconds,
        "cv": handle.cv,
    }
    if blueprint is None and handle.distribution == "exponential":
        out["erlang"] = _erlang_reference(
            arrivals_per_hour, aht_seconds, agents, report.queues[0].sl_seconds, patience_seconds
        )
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    _print_report(out)


def _erlang_reference(*args: Any) -> dict[str, Any] | None:
    """What Erlang C / A predicts for the same single queue, to read beside the
    simulation (None when the formula has no answer)."""
    from app.routing import erlang as formulas

    lam, aht, n, sl, patience = args
    try:
        r = formulas.erlang(
            arrivals_per_hour=lam,
            aht_seconds=aht,
            agents=n,
            sl_seconds=sl,
            patience_seconds=patience,
        )
    except ValueError:
        return None
    return {"model": "erlang_a" if patience else "erlang_c", **r.as_dict()}


def _print_report(out: dict[str, Any]) -> None:
    typer.echo(
        f"{out['replications']} replications of {out['hours']:g} h after a "
        f"{out['warmup_hours']:g} h warm-up (seed {out['seed']}); mean [95 % CI]"
    )
    labels = {
        "service_level": "service level",
        "asa_seconds": "ASA (s)",
        "abandonment_rate": "abandonment",
        "occupancy": "occupancy",
    }
    sections = [(f"queue '{k}'", v) for k, v in out["queues"].items()]
    for title, q in [*sections, ("overall", out["overall"])]:
        sl = f", answered within {q['sl_seconds']:g} s" if "sl_seconds" in q else ""
        typer.echo(
            f"{title}: {q['arrivals_per_hour']:g}/h offered, "
            f"{q['contacts_per_replication']:.0f} contacts per replication{sl}"
        )
        for key, label in labels.items():
            est = q[key]
            if est is None:
                typer.echo(f"  {label:<14} -")
                continue
            lo, hi = est["ci95"]
            typer.echo(f"  {label:<14} {_fmt(est['mean'])}  [{_fmt(lo)}, {_fmt(hi)}]")
    if out.get("erlang"):
        e = out["erlang"]
        typer.echo(
            f"{e['model'].replace('_', ' ').title()} for comparison: service level "
            f"{_fmt(e['service_level'])}, ASA {_fmt(e['asa_seconds'])} s, occupancy "
            f"{_fmt(e['occupancy'])}"
            + (
                f", abandonment {_fmt(e['probability_abandon'])}"
                if "probability_abandon" in e
                else ""
            )
        )


def register(cli: typer.Typer) -> None:
    """Add the routing planning commands to the CLI."""
    cli.command("erlang")(erlang)
    cli.command("simulate")(simulate)
