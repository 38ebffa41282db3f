"""Every error status an operation documents is problem+json with at least one example."""

from __future__ import annotations

from app.config import Settings
from app.main import create_app


def test_every_documented_error_has_problem_json_examples():
    schema = create_app(Settings(), app_database_url="postgresql://x@/y").openapi()
    missing = []
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            for status, resp in op.get("responses", {}).items():
                if not status.startswith(("4", "5")) or path == "/readyz":
                    continue
                content = resp.get("content", {}).get("application/problem+json", {})
                if not (content.get("examples") or content.get("example")):
                    missing.append(f"{method.upper()} {path} {status}")
    assert missing == []
    ops = sum(len(v) for v in schema["paths"].values())
    assert ops > 60  # the whole API, not an empty schema
