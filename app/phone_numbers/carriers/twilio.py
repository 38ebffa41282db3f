"""Twilio: AvailablePhoneNumbers to search, IncomingPhoneNumbers to claim and release,
and the Pricing API for the monthly price (the search itself quotes none).

Wire format: https://www.twilio.com/docs/phone-numbers/api (REST API 2010-04-01, JSON
answers, form-encoded requests, HTTP basic auth with the account SID and auth token).
"""

from __future__ import annotations

import contextlib
import logging
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

import httpx

from app.config import Settings
from app.phone_numbers.carriers.base import (
    AvailableNumber,
    CarrierFailure,
    NumberQuery,
    NumberUnavailable,
    Price,
    national_matches,
    national_number,
)
from app.phone_numbers.e164 import check_e164

log = logging.getLogger("switchboard.carriers.twilio")

_RESOURCE = {"local": "Local", "toll_free": "TollFree", "mobile": "Mobile"}
_PRICE_TYPE = {"local": "local", "toll_free": "toll free", "mobile": "mobile"}
# Twilio's AreaCode filter works for these countries only; elsewhere we filter locally.
_AREA_CODE_COUNTRIES = frozenset({"US", "CA"})
# Twilio error codes meaning "this number cannot be bought now".
_UNAVAILABLE_CODES = frozenset({21422, 21452, 21421})
# ISO 4217 currencies without a minor unit (the rest Twilio quotes have two decimals).
_ZERO_DECIMAL = frozenset({"JPY", "KRW", "CLP", "ISK", "VND", "UGX", "XAF", "XOF"})


def _minor_units(amount: str, currency: str) -> int | None:
    try:
        value = Decimal(amount)
    except (InvalidOperation, TypeError):
        return None
    if not value.is_finite() or value < 0:
        return None
    exponent = 0 if currency in _ZERO_DECIMAL else 2
    return int((value * 10**exponent).quantize(Decimal(1), rounding=ROUND_HALF_UP))


class TwilioCarrier:
    name = "twilio"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        api_base_url: str = "https://api.twilio.com",
        pricing_base_url: str = "https://pricing.twilio.com",
        timeout: float = 10.0,
    ) -> None:
        self.sid, self._token = account_sid, auth_token
        self.api = f"{api_base_url.rstrip('/')}/2010-04-01/Accounts/{quote(account_sid, safe='')}"
        self.pricing = pricing_base_url.rstrip("/")
        self.timeout = timeout

    @classmethod
    def from_settings(cls, settings: Settings) -> TwilioCarrier:
        if not settings.twilio_account_sid or settings.twilio_auth_token is None:
            raise CarrierFailure(
                "twilio", "not configured (SWITCHBOARD_TWILIO_ACCOUNT_SID, _AUTH_TOKEN)"
            )
        return cls(
            settings.twilio_account_sid,
            settings.twilio_auth_token.get_secret_value(),
            api_base_url=settings.twilio_api_base_url,
            pricing_base_url=settings.twilio_pricing_base_url,
        )

    async def _send(self, method: str, url: str, **kw: Any) -> httpx.Response:
        try:
            async with httpx.AsyncClient(auth=(self.sid, self._token), timeout=self.timeout) as c:
                r = await c.request(method, url, **kw)
        except httpx.HTTPError as exc:
            raise CarrierFailure(self.name, f"unreachable ({type(exc).__name__})") from exc
        if r.status_code in (401, 403):
            raise CarrierFailure(self.name, "authentication failed")
        if r.status_code >= 500 or r.status_code == 429:
            raise CarrierFailure(self.name, f"answered HTTP {r.status_code}")
        return r

    def _json(self, r: httpx.Response, what: str) -> dict[str, Any]:
        try:
            body = r.json()
        except ValueError as exc:
            raise CarrierFailure(self.name, f"{what}: answer is not JSON") from exc
        if not isinstance(body, dict):
            raise CarrierFailure(self.name, f"{what}: unexpected answer")
        return body

    def _refused(self, r: httpx.Response, what: str) -> CarrierFailure:
        code = None
        with contextlib.suppress(ValueError, AttributeError):
            code = r.json().get("code")
        log.warning("twilio %s answered %s (code %s): %s", what, r.status_code, code, r.text[:500])
        return CarrierFailure(self.name, f"{what} refused (HTTP {r.status_code}, code {code})")

    async def _price(self, query: NumberQuery) -> Price | None:
        r = await self._send(
            "GET", f"{self.pricing}/v1/PhoneNumbers/Countries/{quote(query.country, safe='')}"
        )
        if r.status_code != 200:
            return None  # not priced for this country: show no price rather than fail
        body = self._json(r, "pricing")
        currency = str(body.get("price_unit") or "").upper()
        for entry in body.get("phone_number_prices") or []:
            if isinstance(entry, dict) and entry.get("number_type") == _PRICE_TYPE.get(
                query.number_type
            ):
                amount = _minor_units(str(entry.get("current_price")), currency)
                if amount is not None and len(currency) == 3:
                    return Price(amount, currency)
        return None

    async def search(self, query: NumberQuery) -> list[AvailableNumber]:
        url = (
            f"{self.api}/AvailablePhoneNumbers/{quote(query.country, safe='')}/"
            f"{_RESOURCE[query.number_type]}.json"
        )
        params: dict[str, str | int] = {"PageSize": query.limit}
        local_area = bool(query.area_code) and query.country not in _AREA_CODE_COUNTRIES
        if query.area_code and not local_area:
            params["AreaCode"] = query.area_code
        if query.contains:
            params["Contains"] = query.contains
        if local_area:
            params["PageSize"] = min(query.limit * 5, 200)  # we drop most of them below
        r = await self._send("GET", url, params=params)
        if r.status_code == 404:
            return []  # Twilio has no inventory of this kind in this country
        if r.status_code != 200:
            raise self._refused(r, "search")
        body = self._json(r, "search")
        price = await self._price(query)
        found: list[AvailableNumber] = []
        for item in body.get("available_phone_numbers") or []:
            number = self._number(item)
            if number is None:
                continue
            if local_area and not national_matches(
                national_number(number), NumberQuery(query.country, area_code=query.area_code)
            ):
                continue
            caps = item.get("capabilities") or {}
            found.append(
                AvailableNumber(
                    e164=number,
                    country=str(item.get("iso_country") or query.country),
                    number_type=query.number_type,
                    voice=bool(caps.get("voice")),
                    sms=bool(caps.get("SMS") or caps.get("sms")),
                    monthly_price=price,
                    locality=item.get("locality") or None,
                )
            )
        return found[: query.limit]

    @staticmethod
    def _number(item: Any) -> str | None:
        if not isinstance(item, dict) or not isinstance(item.get("phone_number"), str):
            return None
        try:
            return check_e164(item["phone_number"])
        except ValueError:
            return None  # never pass on a number we could not store

    async def claim(self, e164: str) -> str:
        r = await self._send(
            "POST", f"{self.api}/IncomingPhoneNumbers.json", data={"PhoneNumber": e164}
        )
        if r.status_code == 400:
            try:
                code = int(r.json().get("code"))
            except (ValueError, TypeError, AttributeError):
                code = None
            if code in _UNAVAILABLE_CODES:
                raise NumberUnavailable(e164)
        if r.status_code not in (200, 201):
            raise self._refused(r, "claim")
        sid = self._json(r, "claim").get("sid")
        if not isinstance(sid, str) or not sid:
            raise CarrierFailure(self.name, "claim: answer carries no sid")
        return sid

    async def release(self, carrier_ref: str) -> None:
        r = await self._send(
            "DELETE", f"{self.api}/IncomingPhoneNumbers/{quote(carrier_ref, safe='')}.json"
        )
        if r.status_code in (200, 204, 404):  # 404: already gone from the account
            return
        raise self._refused(r, "release")
