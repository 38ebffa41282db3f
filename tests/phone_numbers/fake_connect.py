"""A small Amazon Connect on 127.0.0.1, in a thread, for the phone-number operations
(SearchAvailablePhoneNumbers, ClaimPhoneNumber, DescribePhoneNumber, ReleasePhoneNumber)
in their REST-JSON protocol. It checks AWS Signature Version 4 itself (written here
from the specification, not with botocore's signer) so that bad credentials fail as
they would at AWS. moto does not implement these operations."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from tests.live_server import FakeService

_AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, ?SignedHeaders=(?P<signed>[^,]+), ?"
    r"Signature=(?P<signature>[0-9a-f]{64})$"
)


def _inventory() -> dict[str, tuple[str, str]]:
    numbers = {f"+141555501{n:02d}": ("US", "DID") for n in range(0, 25)}
    numbers |= {f"+121255501{n:02d}": ("US", "DID") for n in range(0, 5)}
    numbers |= {f"+44808157{n:04d}": ("GB", "TOLL_FREE") for n in range(0, 5)}
    return numbers


@dataclass
class Claimed:
    number: str
    country: str
    kind: str
    target_arn: str
    polls_left: int  # DescribePhoneNumber answers IN_PROGRESS this many times


@dataclass
class FakeConnect(FakeService):
    access_key: str = "AKIAFAKECONNECT00001"
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(30))
    region: str = "us-east-1"
    instance_arn: str = (
        "arn:aws:connect:us-east-1:123456789012:instance/2f1c0d6e-5b4a-4c3d-9e8f-7a6b5c4d3e2f"
    )
    inventory: dict[str, tuple[str, str]] = field(default_factory=_inventory)
    claimed: dict[str, Claimed] = field(default_factory=dict)  # PhoneNumberId -> claim
    in_progress_polls: int = 1
    fail_claims: bool = False  # claims end in status FAILED
    requests: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(_Handler):
            connect = fake

        return Handler

    # -- SigV4 -----------------------------------------------------------------------
    def auth_error(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> str | None:
        m = _AUTH.match(headers.get("authorization", ""))
        if m is None:
            return "MissingAuthenticationTokenException"
        if m["key"] != self.access_key:
            return "UnrecognizedClientException"
        parts = urlsplit(raw_path)
        query = "&".join(sorted(p for p in parts.query.split("&") if p))
        signed = m["signed"].split(";")
        canonical_headers = "".join(f"{h}:{' '.join(headers[h].split())}\n" for h in signed)
        canonical = "\n".join(
            [
                method,
                parts.path,
                query,
                canonical_headers,
                m["signed"],
                hashlib.sha256(body).hexdigest(),
            ]
        )
        scope = f"{m['date']}/{m['region']}/{m['service']}/aws4_request"
        to_sign = "\n".join(
            [
                "AWS4-HMAC-SHA256",
                headers.get("x-amz-date", ""),
                scope,
                hashlib.sha256(canonical.encode()).hexdigest(),
            ]
        )
        key = ("AWS4" + self.secret_key).encode()
        for part in (m["date"], m["region"], m["service"], "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, m["signature"]) or m["service"] != "connect":
            return "InvalidSignatureException"
        return None

    # -- operations --------------------------------------------------------------------
    def handle(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.requests.append((method, path, body))
        if method == "POST" and path == "/phone-number/search-available":
            return self.search(body)
        if method == "POST" and path == "/phone-number/claim":
            return self.claim(body)
        if m := re.fullmatch(r"/phone-number/([0-9a-f-]{36})", path):
            if method == "GET":
                return self.describe(m[1])
            if method == "DELETE":
                return self.release(m[1])
        return _error(404, "ResourceNotFoundException", "Unknown operation")

    def _target_ok(self, body: dict[str, Any]) -> bool:
        return body.get("TargetArn") == self.instance_arn

    def search(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if not self._target_ok(body):
            return _error(400, "InvalidParameterException", "TargetArn is not valid")
        held = {c.number for c in self.claimed.values()}
        matches = [
            {"PhoneNumber": n, "PhoneNumberCountryCode": country, "PhoneNumberType": kind}
            for n, (country, kind) in self.inventory.items()
            if country == body.get("PhoneNumberCountryCode")
            and kind == body.get("PhoneNumberType")
            and n.startswith(body.get("PhoneNumberPrefix", "+"))
            and n not in held
        ]
        start = int(body.get("NextToken") or 0)
        size = int(body.get("MaxResults") or 10)
        if not 1 <= size <= 10:
            return _error(400, "InvalidParameterException", "MaxResults must be 1-10")
        answer: dict[str, Any] = {"AvailableNumbersList": matches[start : start + size]}
        if start + size < len(matches):
            answer["NextToken"] = str(start + size)
        return 200, answer

    def claim(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if not self._target_ok(body):
            return _error(400, "InvalidParameterException", "TargetArn is not valid")
        number = body.get("PhoneNumber", "")
        held = {c.number for c in self.claimed.values()}
        if number not in self.inventory or number in held:
            return _error(404, "ResourceNotFoundException", "Phone number is not available")
        number_id = str(uuid.uuid4())
        country, kind = self.inventory[number]
        self.claimed[number_id] = Claimed(
            number, country, kind, self.instance_arn, self.in_progress_polls
        )
        arn = f"arn:aws:connect:{self.region}:123456789012:phone-number/{number_id}"
        return 200, {"PhoneNumberId": number_id, "PhoneNumberArn": arn}

    def describe(self, number_id: str) -> tuple[int, dict[str, Any]]:
        c = self.claimed.get(number_id)
        if c is None:
            return _error(404, "ResourceNotFoundException", "Phone number not found")
        if c.polls_left > 0:
            c.polls_left -= 1
            status = "IN_PROGRESS"
        else:
            status = "FAILED" if self.fail_claims else "CLAIMED"
        return 200, {
            "ClaimedPhoneNumberSummary": {
                "PhoneNumberId": number_id,
                "PhoneNumberArn": f"arn:aws:connect:{self.region}:123456789012:phone-number/{number_id}",
                "PhoneNumber": c.number,
                "PhoneNumberCountryCode": c.country,
                "PhoneNumberType": c.kind,
                "TargetArn": c.target_arn,
                "PhoneNumberStatus": {"Status": status, "Message": ""},
            }
        }

    def release(self, number_id: str) -> tuple[int, dict[str, Any]]:
        if self.claimed.pop(number_id, None) is None:
            return _error(404, "ResourceNotFoundException", "Phone number not found")
        return 200, {}


def _error(status: int, code: str, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"__type": code, "Message": message}


class _Handler(BaseHTTPRequestHandler):
    connect: FakeConnect

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        if status >= 400:
            self.send_header("x-amzn-ErrorType", body["__type"])
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _serve(self, method: str) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        error = self.connect.auth_error(method, self.path, headers, raw)
        if error is not None:
            self._answer(403, {"__type": error, "Message": "The security token is not valid"})
            return
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            self._answer(400, {"__type": "SerializationException", "Message": "bad JSON"})
            return
        self._answer(*self.connect.handle(method, urlsplit(self.path).path, body))

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")
