"""OpenTelemetry tracing and Prometheus metrics (being written; see docs/decisions)."""

from __future__ import annotations

from fastapi import FastAPI

from app.config import Settings


def install_telemetry(app: FastAPI, settings: Settings) -> None:
    """Install tracing/metrics middleware when enabled by configuration."""
    return None
