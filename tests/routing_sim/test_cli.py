"""`switchboard erlang` and `switchboard simulate` as a planner runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from app.cli import cli
from app.routing.erlang import erlang

DEMO = Path(__file__).resolve().parents[2] / "tenants" / "demo.yaml"
runner = CliRunner()


def _ok(*args: str) -> dict:
    result = runner.invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _refused(*args: str) -> str:
    result = runner.invoke(cli, list(args))
    assert result.exit_code == 2, result.output
    return " ".join(result.stderr.split())


def test_erlang_c_json():
    out = _ok("erlang", "--arrivals-per-hour", "200", "--aht-seconds", "180", "--agents", "14")
    expected = erlang(arrivals_per_hour=200, aht_seconds=180, agents=14, sl_seconds=20)
    assert out["model"] == "erlang_c" and out["agents"] == 14
    for key in ("traffic_erlangs", "probability_of_wait", "service_level", "asa_seconds"):
        assert out[key] == pytest.approx(getattr(expected, key))
    assert out["occupancy"] == pytest.approx(10 / 14)
    assert "probability_abandon" not in out


def test_erlang_a_with_a_target_says_how_many_agents():
    out = _ok(
        "erlang",
        "--arrivals-per-hour",
        "200",
        "--aht-seconds",
        "180",
        "--sl-seconds",
        "20",
        "--patience-seconds",
        "60",
        "--target-service-level",
        "0.8",
    )
    assert out["model"] == "erlang_a"
    n = out["agents_needed"]
    assert out["service_level"] >= 0.8
    fewer = erlang(
        arrivals_per_hour=200, aht_seconds=180, agents=n - 1, sl_seconds=20, patience_seconds=60
    )
    assert fewer.service_level < 0.8
    assert 0 < out["probability_abandon"] < 0.1


def test_erlang_text_output_names_every_key():
    result = runner.invoke(
        cli, ["erlang", "--arrivals-per-hour", "720", "--aht-seconds", "240", "--agents", "55"]
    )
    assert result.exit_code == 0
    for key in ("traffic_erlangs: 48", "probability_of_wait: 0.2387", "occupancy: 0.8727"):
        assert key in result.stdout


def test_erlang_refusals_are_usage_errors_with_a_reason():
    base = ("erlang", "--arrivals-per-hour", "200", "--aht-seconds", "180")
    assert "exactly one of --agents and --target-service-level" in _refused(*base)
    assert "exactly one of" in _refused(*base, "--agents", "12", "--target-service-level", "0.8")
    assert "needs more than 10 agents" in _refused(*base, "--agents", "10")
    assert "--aht-seconds must be greater than 0" in _refused(
        "erlang", "--arrivals-per-hour", "200", "--aht-seconds", "0", "--agents", "3"
    )
    assert "--target-service-level must be a share" in _refused(
        *base, "--target-service-level", "1"
    )


def test_simulate_single_queue_json():
    out = _ok(
        "simulate",
        "--arrivals-per-hour",
        "120",
        "--aht-seconds",
        "180",
        "--agents",
        "8",
        "--hours",
        "4",
        "--warmup-hours",
        "0.5",
        "--replications",
        "3",
        "--seed",
        "3",
    )
    assert out["replications"] == 3 and out["seed"] == 3
    overall = out["overall"]
    for key in ("service_level", "asa_seconds", "abandonment_rate", "occupancy"):
        lo, hi = overall[key]["ci95"]
        assert lo <= overall[key]["mean"] <= hi
    assert 0.6 < overall["occupancy"]["mean"] < 0.9  # 6 erlangs on 8 agents
    assert out["erlang"]["model"] == "erlang_c"
    assert out["handle_time"] == {"distribution": "exponential", "mean_seconds": 180.0, "cv": 1.0}
    # Same flags, same numbers.
    again = _ok(
        "simulate",
        "--arrivals-per-hour",
        "120",
        "--aht-seconds",
        "180",
        "--agents",
        "8",
        "--hours",
        "4",
        "--warmup-hours",
        "0.5",
        "--replications",
        "3",
        "--seed",
        "3",
    )
    assert again == out


def test_simulate_text_with_abandonment_and_lognormal():
    result = runner.invoke(
        cli,
        [
            "simulate",
            "--arrivals-per-hour",
            "240",
            "--aht-seconds",
            "180",
            "--agents",
            "10",
            "--patience-seconds",
            "120",
            "--handle-time-distribution",
            "lognormal",
            "--handle-time-cv",
            "1.5",
            "--hours",
            "3",
            "--replications",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "2 replications of 3 h after a 1 h warm-up" in text
    for label in ("service level", "ASA (s)", "abandonment", "occupancy"):
        assert label in text
    assert "Erlang" not in text  # no formula applies to lognormal handle times


def test_simulate_refusals():
    single = ("simulate", "--arrivals-per-hour", "100", "--aht-seconds", "180")
    assert "give --agents and --arrivals-per-hour" in _refused(*single)
    assert "no steady state" in _refused(*single, "--agents", "5")
    assert "at least 2 replications" in _refused(*single, "--agents", "8", "--replications", "1")
    assert "lognormal only" in _refused(*single, "--agents", "8", "--handle-time-cv", "2")
    assert "must be one of exponential, lognormal" in _refused(
        *single, "--agents", "8", "--handle-time-distribution", "gamma"
    )
    assert "need --blueprint" in _refused(
        *single, "--agents", "8", "--queue-arrivals-per-hour", "Sales=3"
    )
    demo = ("simulate", "--blueprint", str(DEMO), "--aht-seconds", "180")
    assert "come from the blueprint" in _refused(*demo, "--agents", "3", "--arrivals-per-hour", "9")
    assert "not both and not neither" in _refused(*demo)
    assert "not both" in _refused(
        *demo, "--arrivals-per-hour", "9", "--queue-arrivals-per-hour", "Sales=3"
    )
    assert "no queue named 'Billing'" in _refused(*demo, "--queue-arrivals-per-hour", "Billing=3")
    assert "NAME=NUMBER" in _refused(*demo, "--queue-arrivals-per-hour", "Sales")


def test_simulate_the_demo_blueprint():
    out = _ok(
        "simulate",
        "--blueprint",
        str(DEMO),
        "--aht-seconds",
        "240",
        "--queue-arrivals-per-hour",
        "Sales=30",
        "--queue-arrivals-per-hour",
        "Support=40",
        "--queue-arrivals-per-hour",
        "Soporte en español=10",
        "--patience-seconds",
        "300",
        "--hours",
        "6",
        "--replications",
        "3",
    )
    assert set(out["queues"]) == {"Sales", "Support", "Soporte en español"}
    # Each queue's own threshold from the blueprint (Support: 30 s; the others default 20 s).
    assert out["queues"]["Support"]["sl_seconds"] == 30
    assert out["queues"]["Sales"]["sl_seconds"] == 20
    assert out["overall"]["arrivals_per_hour"] == 80
    for q in (*out["queues"].values(), out["overall"]):
        assert q["contacts_per_replication"] > 0
        assert 0 < q["service_level"]["mean"] < 1
        assert 0 < q["occupancy"]["mean"] < 1
    assert "erlang" not in out


def test_simulate_a_small_blueprint_routes_by_skill(tmp_path):
    # Billing needs the Billing skill, which only Bea holds; General is served by Gus.
    # Billing contacts wait for Bea alone, so Billing's waits are clearly the longer ones.
    blueprint = {
        "version": 1,
        "tenant": {"slug": "tiny", "name": "Tiny"},
        "skills": [{"name": "Billing"}, {"name": "General"}],
        "queues": [
            {
                "name": "Billing",
                "channels": ["voice"],
                "required_skills": [{"skill": "Billing", "min_proficiency": 3}],
                "wrap_up_seconds": 0,
            },
            {"name": "General", "channels": ["chat"], "service_level_seconds": 60},
        ],
        "routing_profiles": [
            {"name": "Both", "queues": [{"queue": "Billing"}, {"queue": "General"}]},
            {"name": "Chat only", "channel_costs": {"chat": 50}, "queues": [{"queue": "General"}]},
        ],
        "agents": [
            {
                "email": "bea@tiny.example",
                "display_name": "Bea",
                "routing_profile": "Both",
                "skills": [{"skill": "Billing", "proficiency": 4}],
            },
            {"email": "gus@tiny.example", "display_name": "Gus", "routing_profile": "Chat only"},
        ],
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(blueprint))
    args = [
        "simulate",
        "--blueprint",
        str(path),
        "--aht-seconds",
        "300",
        "--queue-arrivals-per-hour",
        "Billing=6",
        "--queue-arrivals-per-hour",
        "General=6",
        "--hours",
        "40",
        "--replications",
        "4",
    ]
    out = _ok(*args)
    billing, general = out["queues"]["Billing"], out["queues"]["General"]
    assert general["sl_seconds"] == 60
    assert billing["asa_seconds"]["ci95"][0] > general["asa_seconds"]["ci95"][1]
    # Points in use over 200 points of capacity: Billing 0.5 erlangs x 100 points, General
    # 0.55 erlangs (300 s + the default 30 s wrap-up) x 34 or 50 points: about 0.37.
    assert 0.1 < out["overall"]["occupancy"]["mean"] < 0.5

    blueprint["queues"][0]["required_skills"][0]["skill"] = "Accounting"
    path.write_text(yaml.safe_dump(blueprint))
    assert "queues.0.required_skills.0.skill: unknown skill 'Accounting'" in _refused(*args)
    blueprint["queues"][0]["required_skills"][0]["skill"] = "Billing"
    blueprint["agents"][0]["routing_profile"] = "Chat only"
    path.write_text(yaml.safe_dump(blueprint))
    assert "no agent serves queue 'Billing' on voice" in _refused(*args)
