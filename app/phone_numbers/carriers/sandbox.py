"""The sandbox carrier: a deterministic inventory drawn only from ranges reserved for
fiction and testing. It never calls anything outside the process."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from app.phone_numbers import fictional
from app.phone_numbers.carriers.base import (
    AvailableNumber,
    NumberNotOffered,
    NumberQuery,
    Price,
    national_matches,
)

# Numbers held or cooling down on the platform, among the candidates given.
TakenCheck = Callable[[Sequence[str]], Awaitable[set[str]]]

# (country, type) -> monthly price and capabilities, like a real carrier's price list.
_OFFER: dict[tuple[str, str], tuple[Price, bool, bool]] = {
    ("US", "local"): (Price(115, "USD"), True, True),
    ("GB", "local"): (Price(100, "GBP"), True, False),
    ("GB", "mobile"): (Price(150, "GBP"), True, True),
    ("GB", "toll_free"): (Price(200, "GBP"), True, False),
}

_BATCH = 200


class SandboxCarrier:
    name = "sandbox"

    def __init__(self, taken: TakenCheck | None = None) -> None:
        self._taken = taken

    async def search(self, query: NumberQuery) -> list[AvailableNumber]:
        offer = _OFFER.get((query.country, query.number_type))
        if offer is None:
            return []
        price, voice, sms = offer
        found: list[AvailableNumber] = []
        candidates: list[tuple[str, str | None]] = []

        async def drain() -> None:
            taken = await self._taken([c for c, _ in candidates]) if self._taken else set()
            for e164, where in candidates:
                if e164 not in taken and len(found) < query.limit:
                    found.append(
                        AvailableNumber(
                            e164, query.country, query.number_type, voice, sms, price, where
                        )
                    )
            candidates.clear()

        for block in fictional.blocks_for(query.country, query.number_type):
            skip = len(block.calling_code) + 1  # '+' and the country calling code
            for e164 in block.numbers():
                if national_matches(e164[skip:], query):
                    candidates.append((e164, block.locality))
                    if len(candidates) >= _BATCH:
                        await drain()
                        if len(found) >= query.limit:
                            return found
        await drain()
        return found

    async def claim(self, e164: str) -> str:
        if not fictional.is_fictional(e164):
            raise NumberNotOffered(e164)
        return f"sandbox-{e164.removeprefix('+')}"

    async def release(self, carrier_ref: str) -> None:
        return None
