"""A small Twilio on 127.0.0.1, in a thread, speaking the wire format our adapter meets:
REST API 2010-04-01 (AvailablePhoneNumbers, IncomingPhoneNumbers) with HTTP basic auth,
form-encoded requests and JSON answers, and the Pricing API v1 for number prices.
Its inventory holds only numbers reserved for fiction."""

from __future__ import annotations

import base64
import json
import re
import secrets
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.live_server import FakeService

_TYPES = {"Local": "local", "TollFree": "toll_free", "Mobile": "mobile"}


def _inventory() -> dict[str, dict[str, Any]]:
    numbers: dict[str, dict[str, Any]] = {}
    for npa, city in (("415", "San Francisco"), ("212", "New York")):
        for n in range(100, 120):
            numbers[f"+1{npa}5550{n}"] = {
                "iso_country": "US",
                "type": "local",
                "locality": city,
                "region": "CA" if npa == "415" else "NY",
                "voice": True,
                "sms": True,
            }
    for n in range(0, 20):
        numbers[f"+44207946{n:04d}"] = {
            "iso_country": "GB",
            "type": "local",
            "locality": "London",
            "region": "",
            "voice": True,
            "sms": False,
        }
        numbers[f"+44113496{n:04d}"] = {
            "iso_country": "GB",
            "type": "local",
            "locality": "Leeds",
            "region": "",
            "voice": True,
            "sms": False,
        }
    return numbers


PRICES = {
    "US": {
        "country": "United States",
        "iso_country": "US",
        "phone_number_prices": [
            {"number_type": "local", "base_price": "1.15", "current_price": "1.15"},
            {"number_type": "toll free", "base_price": "2.15", "current_price": "2.15"},
        ],
        "price_unit": "USD",
        "url": "https://pricing.twilio.com/v1/PhoneNumbers/Countries/US",
    },
    "GB": {
        "country": "United Kingdom",
        "iso_country": "GB",
        "phone_number_prices": [
            {"number_type": "local", "base_price": "1.00", "current_price": "0.995"},
            {"number_type": "mobile", "base_price": "1.00", "current_price": "1.00"},
        ],
        "price_unit": "GBP",
        "url": "https://pricing.twilio.com/v1/PhoneNumbers/Countries/GB",
    },
}


@dataclass
class FakeTwilio(FakeService):
    account_sid: str = field(default_factory=lambda: "AC" + secrets.token_hex(16))
    auth_token: str = field(default_factory=lambda: secrets.token_hex(16))
    inventory: dict[str, dict[str, Any]] = field(default_factory=_inventory)
    owned: dict[str, str] = field(default_factory=dict)  # PN sid -> number
    # What happened: (method, path, query or form).
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    fail_status: int | None = None  # answer everything with this status

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(_Handler):
            twilio = fake

        return Handler

    # -- protocol ------------------------------------------------------------------
    def error(self, status: int, code: int, message: str) -> tuple[int, dict[str, Any]]:
        return status, {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        }

    def authorized(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return user == self.account_sid and secrets.compare_digest(password, self.auth_token)

    def handle(
        self, method: str, path: str, params: dict[str, str]
    ) -> tuple[int, dict[str, Any] | None]:
        self.requests.append((method, path, params))
        if self.fail_status is not None:
            return self.error(self.fail_status, 20500, "Internal Server Error")
        if m := re.fullmatch(r"/v1/PhoneNumbers/Countries/([A-Z]{2})", path):
            if m[1] not in PRICES:
                return self.error(404, 20404, "The requested resource was not found")
            return 200, PRICES[m[1]]
        m = re.fullmatch(r"/2010-04-01/Accounts/([^/]+)/(.+)", path)
        if not m or m[1] != self.account_sid:
            return self.error(404, 20404, "The requested resource was not found")
        rest = m[2]
        if method == "GET" and (
            s := re.fullmatch(
                r"AvailablePhoneNumbers/([A-Z]{2})/(Local|TollFree|Mobile)\.json", rest
            )
        ):
            return self.available(s[1], _TYPES[s[2]], params)
        if method == "POST" and rest == "IncomingPhoneNumbers.json":
            return self.buy(params.get("PhoneNumber", ""))
        if method == "DELETE" and (
            s := re.fullmatch(r"IncomingPhoneNumbers/(PN[0-9a-f]{32})\.json", rest)
        ):
            if self.owned.pop(s[1], None) is None:
                return self.error(404, 20404, "The requested resource was not found")
            return 204, None
        return self.error(404, 20404, "The requested resource was not found")

    def available(
        self, country: str, kind: str, params: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        if country not in {"US", "GB"}:
            return self.error(404, 20404, "The requested resource was not found")
        owned = set(self.owned.values())
        items = []
        for number, info in self.inventory.items():
            if info["iso_country"] != country or info["type"] != kind or number in owned:
                continue
            if "AreaCode" in params and not number.startswith("+1" + params["AreaCode"]):
                continue
            if "Contains" in params and params["Contains"] not in number:
                continue
            items.append(
                {
                    "friendly_name": number,
                    "phone_number": number,
                    "lata": "722",
                    "locality": info["locality"],
                    "rate_center": info["locality"].upper(),
                    "latitude": "37.780000",
                    "longitude": "-122.420000",
                    "region": info["region"],
                    "postal_code": "94103",
                    "iso_country": country,
                    "address_requirements": "none",
                    "beta": False,
                    "capabilities": {
                        "voice": info["voice"],
                        "SMS": info["sms"],
                        "MMS": info["sms"],
                        "fax": False,
                    },
                }
            )
        size = int(params.get("PageSize", "50"))
        return 200, {
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/AvailablePhoneNumbers/{country}/Local.json",
            "available_phone_numbers": items[:size],
        }

    def buy(self, number: str) -> tuple[int, dict[str, Any]]:
        if number not in self.inventory or number in self.owned.values():
            return self.error(400, 21422, "PhoneNumber is not available")
        sid = "PN" + secrets.token_hex(16)
        self.owned[sid] = number
        info = self.inventory[number]
        return 201, {
            "sid": sid,
            "account_sid": self.account_sid,
            "phone_number": number,
            "friendly_name": number,
            "status": "in-use",
            "capabilities": {"voice": info["voice"], "sms": info["sms"], "mms": info["sms"]},
            "date_created": "Mon, 24 Nov 2026 09:30:00 +0000",
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/IncomingPhoneNumbers/{sid}.json",
        }


class _Handler(BaseHTTPRequestHandler):
    twilio: FakeTwilio

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _answer(self, status: int, body: dict[str, Any] | None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _serve(self, method: str) -> None:
        parts = urlsplit(self.path)
        params = {k: v[0] for k, v in parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            raw = self.rfile.read(length).decode()
            if self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
                params |= {k: v[0] for k, v in parse_qs(raw).items()}
        if not self.twilio.authorized(self.headers.get("Authorization")):
            self._answer(*self.twilio.error(401, 20003, "Authenticate"))
            return
        self._answer(*self.twilio.handle(method, parts.path, params))

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")
