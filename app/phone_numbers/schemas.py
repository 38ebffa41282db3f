from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.phone_numbers.e164 import E164

NumberTypeName = Literal["local", "toll_free", "mobile"]

_READ_EXAMPLE: dict[str, Any] = {
    "id": "019a9f3c-5c1e-7d2a-9b8e-3f1a2b4c5d6e",
    "number": "+14155550123",
    "country": "US",
    "type": "local",
    "carrier": "sandbox",
    "flow_id": "019a9f3b-0000-7000-8000-000000000001",
    "status": "active",
    "claimed_at": "2026-11-24T09:30:00Z",
    "released_at": None,
    "version": 2,
    "created_at": "2026-11-24T09:30:00Z",
    "updated_at": "2026-11-24T09:31:12Z",
}


class PhoneNumberClaim(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"number": "+14155550123"},
                {"number": "+442079460123", "flow_id": "019a9f3b-0000-7000-8000-000000000001"},
            ]
        },
    )

    number: E164 = Field(description="Strict E.164: '+', country code, number; digits only")
    flow_id: uuid.UUID | None = Field(
        default=None, description="The contact flow that answers calls to this number"
    )


class PhoneNumberUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"flow_id": "019a9f3b-0000-7000-8000-000000000001"}, {"flow_id": None}]
        },
    )

    flow_id: uuid.UUID | None = Field(
        default=None, description="A contact flow of yours, or null to detach"
    )


class PhoneNumberRead(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_READ_EXAMPLE]})

    id: uuid.UUID
    number: str
    country: str
    type: str
    carrier: str
    flow_id: uuid.UUID | None
    status: Literal["active", "released"]
    claimed_at: datetime
    released_at: datetime | None
    version: int
    created_at: datetime
    updated_at: datetime


class Capabilities(BaseModel):
    voice: bool
    sms: bool


class MonthlyPrice(BaseModel):
    amount_minor: int = Field(description="In the currency's minor unit (cents, pence)")
    currency: str = Field(description="ISO 4217")


class AvailableNumberRead(BaseModel):
    number: str
    country: str
    type: NumberTypeName
    locality: str | None
    capabilities: Capabilities
    monthly_price: MonthlyPrice | None = Field(
        description="null when the carrier's search quotes no price"
    )


class AvailableNumbers(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "carrier": "sandbox",
                    "items": [
                        {
                            "number": "+14155550100",
                            "country": "US",
                            "type": "local",
                            "locality": "San Francisco, CA",
                            "capabilities": {"voice": True, "sms": True},
                            "monthly_price": {"amount_minor": 115, "currency": "USD"},
                        }
                    ],
                }
            ]
        }
    )

    carrier: str
    items: list[AvailableNumberRead]
