"""``ms_from_iso`` keeps a cache of whole seconds: it must give what plain datetime arithmetic gives, in every form."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from l3_atom.stream_processing.standardiser import ms_from_iso

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MS = timedelta(milliseconds=1)
# Forms exchanges send (and fromisoformat reads): fractions of 0-6 digits, Z, offsets, no zone, a space, basic format.
FORMS = (
    "%Y-%m-%dT%H:%M:%S.{us}Z", "%Y-%m-%dT%H:%M:%S.{ms}Z", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.{us}{zone}",
    "%Y-%m-%dT%H:%M:%S{zone}", "%Y-%m-%d %H:%M:%S.{us}", "%Y-%m-%dT%H:%M:%S", "%Y%m%dT%H%M%S.{us}Z",
    "%Y-%m-%dT%H:%MZ", "%Y-%m-%dT%H:%M{zone}",
)
ZONES = ("+00:00", "-00:00", "+02:00", "-05:30", "+00:30")


def reference_ms(text: str) -> int:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // ONE_MS


@given(
    seconds=st.integers(min_value=-(10**9), max_value=4 * 10**9),
    micros=st.integers(min_value=0, max_value=999_999),
    form=st.sampled_from(FORMS),
    zone=st.sampled_from(ZONES),
)
def test_every_form_gives_the_datetime_arithmetic_result(seconds: int, micros: int, form: str, zone: str) -> None:
    moment = datetime.fromtimestamp(seconds, UTC)
    text = moment.strftime(form).replace("{us}", f"{micros:06d}").replace("{ms}", f"{micros // 1000:03d}")
    text = text.replace("{zone}", zone)
    assert ms_from_iso(text) == reference_ms(text)
    # The second call is answered from the cache of seconds.
    assert ms_from_iso(text) == reference_ms(text)


def test_a_cached_second_is_not_used_for_another_zone() -> None:
    """Two times that share their first 19 characters but not their zone differ by the zone's offset."""
    utc, shifted = "2023-11-14T22:13+00:00", "2023-11-14T22:13+00:30"
    assert ms_from_iso(utc) - ms_from_iso(shifted) == 30 * 60 * 1000
    assert ms_from_iso(shifted) == reference_ms(shifted)
    east = datetime(2023, 11, 14, 22, 13, 20, 500_000, tzinfo=timezone(timedelta(hours=2)))
    assert ms_from_iso(east.isoformat()) == reference_ms(east.isoformat())


@pytest.mark.parametrize("value", ["2023-13-01T00:00:00Z", "yesterday", ""])
def test_a_malformed_time_is_refused(value: str) -> None:
    with pytest.raises(ValueError):
        ms_from_iso(value)


def test_a_number_is_not_a_time() -> None:
    with pytest.raises(TypeError, match="ISO-8601"):
        ms_from_iso(1_700_000_000_000)
