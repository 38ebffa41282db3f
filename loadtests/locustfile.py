"""What a new tenant does in its first minutes: sign up, log in, look at itself, make
and list API keys.

Each simulated user signs up once (a tenant of its own, with a fresh email), logs in
for a JWT, then loops over its tasks with the JWT or the first API key. Run it against
a server you started on this machine (see loadtests/README.md):

    .venv/bin/locust -f loadtests/locustfile.py --host http://127.0.0.1:8000 \
        --headless --users 20 --spawn-rate 5 --run-time 1m

Signup and login hash a password with argon2id on purpose: they are the expensive
calls, done once per user, as a real tenant does them.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from locust import FastHttpUser, between, task

PASSWORD = "correct horse battery staple 42"  # noqa: S105 - a load-test tenant's


class NewTenant(FastHttpUser):
    wait_time = between(0.5, 2.0)

    api_key_headers: dict[str, str]
    jwt_headers: dict[str, str]
    refresh_token: str
    refresh_at: float

    def on_start(self) -> None:
        email = f"load-{uuid.uuid4().hex[:12]}@example.com"
        signup = {"company_name": f"Load {email[5:11]}", "email": email, "password": PASSWORD}
        with self.client.post("/v1/signup", json=signup, catch_response=True) as r:
            if r.status_code != 201:
                r.failure(f"signup answered {r.status_code}")
                self.stop()
                return
            body: dict[str, Any] = r.json()
        self.api_key_headers = {"Authorization": f"Bearer {body['api_key']}"}
        credentials = {"email": email, "password": PASSWORD}
        with self.client.post("/v1/auth/token", json=credentials, catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"login answered {r.status_code}")
                self.stop()
                return
            self._take(r.json())

    def _take(self, tokens: dict[str, Any]) -> None:
        self.jwt_headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        self.refresh_token = tokens["refresh_token"]
        # Refresh a minute before the access token expires, as a client should.
        self.refresh_at = time.monotonic() + max(30, int(tokens["expires_in"]) - 60)

    def _fresh_jwt(self) -> dict[str, str]:
        if time.monotonic() >= self.refresh_at:
            r = self.client.post("/v1/auth/refresh", json={"refresh_token": self.refresh_token})
            if r.status_code == 200:
                self._take(r.json())
        return self.jwt_headers

    @task(6)
    def me_with_token(self) -> None:
        self.client.get("/v1/me", headers=self._fresh_jwt(), name="/v1/me (jwt)")

    @task(3)
    def me_with_api_key(self) -> None:
        self.client.get("/v1/me", headers=self.api_key_headers, name="/v1/me (api key)")

    @task(3)
    def list_api_keys(self) -> None:
        self.client.get("/v1/api-keys?limit=20", headers=self.api_key_headers, name="/v1/api-keys")

    @task(1)
    def create_api_key(self) -> None:
        body = {"name": f"integration {uuid.uuid4().hex[:6]}", "scopes": ["me"]}
        self.client.post(
            "/v1/api-keys", json=body, headers=self._fresh_jwt(), name="POST /v1/api-keys"
        )
