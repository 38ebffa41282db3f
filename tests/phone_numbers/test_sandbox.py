"""The sandbox carrier and strict E.164: fictional ranges only, deterministic, filtered."""

from __future__ import annotations

import random
import re

import pytest

from app.phone_numbers import fictional
from app.phone_numbers.carriers import NumberNotOffered, NumberQuery, SandboxCarrier
from app.phone_numbers.e164 import NumberFacts, check_e164, facts

# Written out again here, independently of app/phone_numbers/fictional.py: NANP
# 555-0100..0199 and Ofcom's drama ranges.
FICTION = re.compile(
    r"^\+1[2-9]\d\d55501\d\d$"
    r"|^\+44(207946[0]\d{3}|(11[3-8]|121|131|141|151|161)496[0]\d{3}|191498[0]\d{3}"
    r"|2896496\d{3}|292018[0]\d{3}|163296[0]\d{3}|7700900\d{3}|808157[0]\d{3})$"
)


async def test_never_offers_a_number_outside_the_fictional_ranges() -> None:
    rng = random.Random(20261124)
    sandbox = SandboxCarrier()
    seen: set[str] = set()
    known_areas = [*fictional.US_AREA_CODES, "20", "113", "121", "28", "29", "1632", "7700", "808"]
    for _ in range(600):
        country = rng.choice(["US", "GB", "GB", "US", "CA", "FR"])
        kind = rng.choice(["local", "local", "mobile", "toll_free"])
        area = rng.choice(
            [None, None, rng.choice(known_areas), "".join(rng.choices("0123456789", k=3))]
        )
        contains = rng.choice([None, None, "".join(rng.choices("0123456789", k=rng.randint(2, 4)))])
        limit = rng.randint(1, 50)
        query = NumberQuery(country, kind, area, contains, limit)
        found = await sandbox.search(query)
        assert len(found) <= limit
        for n in found:
            assert FICTION.match(n.e164), (query, n.e164)
            assert check_e164(n.e164) == n.e164  # and it is strict E.164
            assert (n.country, n.number_type) == (country, kind)
            national = n.e164.removeprefix("+1" if country == "US" else "+44")
            assert area is None or national.startswith(area)
            assert contains is None or contains in national
            seen.add(n.e164)
        # Deterministic: the same query gives the same answer.
        assert await sandbox.search(query) == found
    assert len(seen) > 500  # the loop did explore the inventory


async def test_the_whole_inventory_is_fictional() -> None:
    everything: list[str] = []
    for country in ("US", "GB"):
        for kind in ("local", "mobile", "toll_free"):
            found = await SandboxCarrier().search(NumberQuery(country, kind, limit=100_000))
            everything += [n.e164 for n in found]
    assert len(everything) == len(set(everything)) == 20 * 100 + 17 * 1000 + 1000
    bad = [n for n in everything if not FICTION.match(n)]
    assert bad == []


async def test_search_filters() -> None:
    sandbox = SandboxCarrier()
    sf = await sandbox.search(NumberQuery("US", "local", "415", limit=50))
    assert len(sf) == 50 and all(n.e164.startswith("+14155550") for n in sf)
    assert sf[0].e164 == "+14155550100"  # inventory order
    every = await sandbox.search(NumberQuery("US", "local", "415", limit=200))
    assert len(every) == 100 and every[-1].e164 == "+14155550199"
    one = await sandbox.search(NumberQuery("US", "local", "212", "0142"))
    assert [n.e164 for n in one] == ["+12125550142"]
    assert one[0].locality == "New York, NY"
    london = await sandbox.search(NumberQuery("GB", "local", "20", limit=5))
    assert [n.e164 for n in london][:2] == ["+442079460000", "+442079460001"]
    assert london[0].locality == "London" and not london[0].sms
    leeds = await sandbox.search(NumberQuery("GB", "local", "113", "0999"))
    assert [n.e164 for n in leeds] == ["+441134960999"]
    mobiles = await sandbox.search(NumberQuery("GB", "mobile", limit=3))
    assert [n.e164 for n in mobiles] == ["+447700900000", "+447700900001", "+447700900002"]
    assert mobiles[0].sms and mobiles[0].monthly_price is not None
    freephone = await sandbox.search(NumberQuery("GB", "toll_free", limit=1))
    assert freephone[0].e164 == "+448081570000"
    assert await sandbox.search(NumberQuery("US", "toll_free")) == []
    assert await sandbox.search(NumberQuery("FR", "local")) == []
    assert await sandbox.search(NumberQuery("US", "local", "907")) == []  # not stocked
    assert await sandbox.search(NumberQuery("US", "local", contains="0200")) == []


async def test_held_numbers_are_skipped_and_the_page_is_still_full() -> None:
    held = {f"+14155550{n}" for n in range(100, 150)}

    async def taken(candidates: list[str]) -> set[str]:
        return held & set(candidates)

    found = await SandboxCarrier(taken).search(NumberQuery("US", "local", "415", limit=10))
    assert [n.e164 for n in found] == [f"+14155550{n}" for n in range(150, 160)]


async def test_claims_only_fictional_numbers() -> None:
    sandbox = SandboxCarrier()
    assert await sandbox.claim("+14155550100") == "sandbox-14155550100"
    assert await sandbox.claim("+19075550150")  # 555-01XX is fiction in every area code
    assert await sandbox.claim("+447700900999")
    for real in ("+14155552671", "+442079461000", "+447700901000", "+33142685300"):
        with pytest.raises(NumberNotOffered):
            await sandbox.claim(real)
    await sandbox.release("sandbox-14155550100")


@pytest.mark.parametrize(
    ("number", "ok"),
    [
        ("+14155550123", True),
        ("+442079460999", True),
        ("+447700900123", True),  # libphonenumber calls it invalid; Ofcom reserves it
        ("+441632960001", True),
        ("+33142685300", True),  # a real, valid number is well formed
        ("+14155552671", True),
        ("+12115550123", False),  # 211 is no area code, fictional exchange or not
        ("+1415555012", False),
        ("+4402079460123", False),
        ("+44 20 7946 0123", False),
        ("14155550123", False),
        ("+0123456789", False),
        ("+", False),
        ("+447700901000", False),  # next to the drama range: not reserved, not valid
    ],
)
def test_strict_e164(number: str, ok: bool) -> None:
    if ok:
        assert check_e164(number) == number
    else:
        with pytest.raises(ValueError):
            check_e164(number)


def test_facts_of_a_number() -> None:
    assert facts("+14155550123") == NumberFacts("+14155550123", "US", "local")
    assert facts("+442079460123") == NumberFacts("+442079460123", "GB", "local")
    assert facts("+447700900123").number_type == "mobile"
    assert facts("+448081570001").number_type == "toll_free"
    assert facts("+14165550150").country == "CA"
    assert fictional.is_fictional("+14165550150")
    assert not fictional.is_fictional("+14165550200")
