"""Routers matched first (app/main.py MATCHED_FIRST) change no answer: every operation's
path still reaches its own endpoint, as it did with the routers in reading order, and
the OpenAPI document is byte for byte the same."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import RouteContext, iter_route_contexts
from starlette.routing import Match, WebSocketRoute

import app.main
from app.config import Settings
from app.main import create_app
from tests.test_hostile_input import problem_of

_SAMPLE_ID = "0f1e2d3c-4b5a-4697-8877-665544332211"
_PARAM = re.compile(r"\{([^}:]+)(?::([^}]+))?\}")


def _make_app() -> FastAPI:
    return create_app(Settings(), app_database_url="postgresql://x@/y")


@pytest.fixture(scope="module")
def matched_first() -> FastAPI:
    return _make_app()


@pytest.fixture(scope="module")
def reading_order() -> Iterator[FastAPI]:
    """The app as it was wired before: every router in reading order."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(app.main, "MATCHED_FIRST", ())
        yield _make_app()


def _example(template: str) -> str:
    return _PARAM.sub(lambda m: "a/b" if m.group(2) == "path" else _SAMPLE_ID, template)


def _resolve(application: FastAPI, kind: str, method: str, path: str) -> RouteContext | None:
    """The route Starlette's router picks: the first (in app.routes, included routers
    opened in place) whose `matches` is FULL."""
    for context in iter_route_contexts(application.routes):
        scope: dict[str, Any] = {"type": kind, "method": method, "path": path, "root_path": ""}
        match, _ = context.matches(scope)
        if match == Match.FULL:
            return context
    return None


def _operations(application: FastAPI) -> list[tuple[str, str, str]]:
    """(scope type, method, path template): every OpenAPI operation and every websocket."""
    ops = [
        ("http", method.upper(), template)
        for template, item in application.openapi()["paths"].items()
        for method in item
    ]
    ops += [
        ("websocket", "GET", c.path_format or "")
        for c in iter_route_contexts(application.routes)
        if isinstance(c.original_route, WebSocketRoute) and c.path_format
    ]
    return ops


def _key(context: RouteContext | None) -> tuple[str, str] | None:
    if context is None or context.endpoint is None:
        return None
    return context.endpoint.__module__ + "." + context.endpoint.__qualname__, str(
        context.path_format
    )


def test_every_operation_resolves_to_its_own_endpoint_as_before(
    matched_first: FastAPI, reading_order: FastAPI
) -> None:
    ops = _operations(matched_first)
    assert sum(kind == "http" for kind, _, _ in ops) > 100  # the whole API
    assert ("websocket", "GET", "/v1/agent/stream") in ops
    assert ("websocket", "GET", "/v1/widget/stream") in ops
    wrong = []
    for kind, method, template in ops:
        path = _example(template)
        now = _resolve(matched_first, kind, method, path)
        before = _resolve(reading_order, kind, method, path)
        if now is None or now.path_format != template or _key(now) != _key(before):
            wrong.append(f"{method} {path}: {_key(now)} (before: {_key(before)})")
    assert wrong == []


def test_only_the_routers_order_changed(matched_first: FastAPI, reading_order: FastAPI) -> None:
    def routes(application: FastAPI) -> list[tuple[str, str] | None]:
        return [_key(c) for c in iter_route_contexts(application.routes)]

    now, before = routes(matched_first), routes(reading_order)
    assert now != before
    assert sorted(map(str, now)) == sorted(map(str, before))
    # The webhook and widget routes are among the first tried, not the last.
    first_paths = [k[1] for k in now[:40] if k]
    assert any(p.startswith("/v1/webhooks/") for p in first_paths)
    assert any(p.startswith("/v1/widget/") for p in first_paths)


def test_openapi_document_is_unchanged(matched_first: FastAPI, reading_order: FastAPI) -> None:
    now = json.dumps(matched_first.openapi()).encode()
    before = json.dumps(reading_order.openapi()).encode()
    assert now == before
    assert next(iter(matched_first.openapi()["paths"])) == "/healthz"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/v1/webhooks/sms/sandbox/" + _SAMPLE_ID, None),  # GET and POST exist
        ("DELETE", "/v1/webhooks/sms/sandbox/" + _SAMPLE_ID, "GET, POST"),
        ("GET", "/v1/widget/sessions", "POST"),
        ("PUT", "/v1/widget/conversations/" + _SAMPLE_ID + "/messages", "GET, POST"),
        ("POST", "/healthz", "GET"),
    ],
)
async def test_405_still_lists_the_methods_of_a_matched_first_path(
    client: httpx.AsyncClient, method: str, path: str, allow: str | None
) -> None:
    r = await client.request(method, path)
    if allow is None:
        assert r.status_code != 405
        return
    assert problem_of(r, 405)["code"] == "method-not-allowed"
    assert r.headers["allow"] == allow
