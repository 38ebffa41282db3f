"""AWS: Amazon Connect's phone-number API through boto3 (SearchAvailablePhoneNumbers,
ClaimPhoneNumber, DescribePhoneNumber, ReleasePhoneNumber).

Why Connect and not End User Messaging (pinpoint-sms-voice-v2): Connect can search
its inventory and claim a *specific* number, which is what our API offers; End User
Messaging's RequestPhoneNumber hands out whichever number it picks. See
docs/decisions/0008-phone-numbers-and-carriers.md.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import phonenumbers

from app.config import Settings
from app.phone_numbers.carriers.base import (
    AvailableNumber,
    CarrierFailure,
    NumberQuery,
    NumberUnavailable,
    national_matches,
    national_number,
)
from app.phone_numbers.e164 import check_e164, locality

log = logging.getLogger("switchboard.carriers.aws")

_CONNECT_TYPE: dict[str, str] = {"local": "DID", "toll_free": "TOLL_FREE"}
_AUTH_ERRORS = frozenset(
    {
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
        "MissingAuthenticationTokenException",
        "IncompleteSignature",
    }
)
_PAGE = 10  # Connect's largest MaxResults for SearchAvailablePhoneNumbers
_MAX_PAGES = 10
_CLAIM_POLLS = 10
_CLAIM_POLL_SECONDS = 0.5


class ConnectCarrier:
    name = "aws"

    def __init__(self, client: Any, target_arn: str, *, poll_seconds: float = _CLAIM_POLL_SECONDS):
        self.client, self.target_arn, self.poll_seconds = client, target_arn, poll_seconds

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectCarrier:
        import boto3
        from botocore.config import Config

        if not settings.aws_connect_instance_arn:
            raise CarrierFailure("aws", "not configured (SWITCHBOARD_AWS_CONNECT_INSTANCE_ARN)")
        client = boto3.client(
            "connect",
            region_name=settings.aws_region,
            endpoint_url=settings.aws_endpoint_url,
            config=Config(
                connect_timeout=5, read_timeout=10, retries={"max_attempts": 2, "mode": "standard"}
            ),
        )
        return cls(client, settings.aws_connect_instance_arn)

    async def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer: dict[str, Any] = await asyncio.to_thread(
                getattr(self.client, operation), **params
            )
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
            if code in _AUTH_ERRORS:
                raise CarrierFailure(self.name, f"authentication failed ({code})") from exc
            raise _ConnectError(code, str(exc)) from exc
        except BotoCoreError as exc:
            raise CarrierFailure(self.name, f"unreachable ({type(exc).__name__})") from exc
        return answer

    async def search(self, query: NumberQuery) -> list[AvailableNumber]:
        connect_type = _CONNECT_TYPE.get(query.number_type)
        if connect_type is None:
            return []  # Connect has no mobile numbers
        params: dict[str, Any] = {
            "TargetArn": self.target_arn,
            "PhoneNumberCountryCode": query.country,
            "PhoneNumberType": connect_type,
            "MaxResults": _PAGE,
        }
        if query.area_code:
            calling_code = phonenumbers.country_code_for_region(query.country)
            params["PhoneNumberPrefix"] = f"+{calling_code}{query.area_code}"
        found: list[AvailableNumber] = []
        for _ in range(_MAX_PAGES):
            try:
                page = await self._call("search_available_phone_numbers", **params)
            except _ConnectError as exc:
                raise CarrierFailure(self.name, f"search refused ({exc.code})") from exc
            for item in page.get("AvailableNumbersList") or []:
                number = _number(item)
                if number is None or not national_matches(national_number(number), query):
                    continue
                found.append(
                    AvailableNumber(
                        e164=number,
                        country=str(item.get("PhoneNumberCountryCode") or query.country),
                        number_type=query.number_type,
                        voice=True,
                        sms=False,  # SMS on Connect numbers goes through End User Messaging
                        monthly_price=None,  # Connect's search quotes no price
                        locality=locality(number) if query.number_type == "local" else None,
                    )
                )
                if len(found) >= query.limit:
                    return found
            token = page.get("NextToken")
            if not token:
                break
            params["NextToken"] = token
        return found

    async def claim(self, e164: str) -> str:
        try:
            answer = await self._call(
                "claim_phone_number",
                TargetArn=self.target_arn,
                PhoneNumber=e164,
                ClientToken=str(uuid.uuid4()),
            )
        except _ConnectError as exc:
            if exc.code in ("ResourceNotFoundException", "ResourceConflictException"):
                raise NumberUnavailable(e164) from exc
            raise CarrierFailure(self.name, f"claim refused ({exc.code})") from exc
        number_id = answer.get("PhoneNumberId")
        if not isinstance(number_id, str) or not number_id:
            raise CarrierFailure(self.name, "claim: answer carries no PhoneNumberId")
        await self._await_claimed(e164, number_id)
        return number_id

    async def _await_claimed(self, e164: str, number_id: str) -> None:
        """Connect claims asynchronously (status IN_PROGRESS, then CLAIMED or FAILED)."""
        for attempt in range(_CLAIM_POLLS):
            try:
                answer = await self._call("describe_phone_number", PhoneNumberId=number_id)
            except _ConnectError as exc:
                raise CarrierFailure(self.name, f"describe refused ({exc.code})") from exc
            summary = answer.get("ClaimedPhoneNumberSummary") or {}
            status = (summary.get("PhoneNumberStatus") or {}).get("Status")
            if status == "CLAIMED":
                return
            if status == "FAILED":
                log.warning("connect claim of %s failed: %s", e164, summary)
                raise NumberUnavailable(e164)
            if attempt + 1 < _CLAIM_POLLS:
                await asyncio.sleep(self.poll_seconds)
        # Still IN_PROGRESS: Connect finishes it on its own; the number is ours to hold.
        log.info("connect claim of %s still in progress after polling", e164)

    async def release(self, carrier_ref: str) -> None:
        try:
            await self._call(
                "release_phone_number", PhoneNumberId=carrier_ref, ClientToken=str(uuid.uuid4())
            )
        except _ConnectError as exc:
            if exc.code == "ResourceNotFoundException":
                return  # already released
            raise CarrierFailure(self.name, f"release refused ({exc.code})") from exc


class _ConnectError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _number(item: Any) -> str | None:
    if not isinstance(item, dict) or not isinstance(item.get("PhoneNumber"), str):
        return None
    try:
        return check_e164(item["PhoneNumber"])
    except ValueError:
        return None
