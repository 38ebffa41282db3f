"""The plan catalog. Limits are per tenant; None means unlimited."""

from __future__ import annotations

from dataclasses import dataclass

RESOURCES = ("queues", "agents", "phone_numbers", "channels", "concurrent_contacts")


@dataclass(frozen=True)
class Plan:
    name: str
    title: str
    limits: dict[str, int | None]


PLANS: dict[str, Plan] = {
    "trial": Plan(
        "trial",
        "Trial",
        {
            "queues": 5,
            "agents": 10,
            "phone_numbers": 2,
            "channels": 5,
            "concurrent_contacts": 20,
        },
    ),
    "growth": Plan(
        "growth",
        "Growth",
        {
            "queues": 50,
            "agents": 250,
            "phone_numbers": 50,
            "channels": 25,
            "concurrent_contacts": 1000,
        },
    ),
    "enterprise": Plan(
        "enterprise",
        "Enterprise",
        {
            "queues": None,
            "agents": None,
            "phone_numbers": None,
            "channels": None,
            "concurrent_contacts": None,
        },
    ),
}


def plan_for(name: str) -> Plan:
    return PLANS.get(name, PLANS["trial"])
