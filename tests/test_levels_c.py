"""The C loops of ``records_build.lob_outputs`` / ``lob_sided_outputs`` build the Python loops' outputs,
and fail as they fail.

``records_build._python_levels`` and ``_python_sided_levels`` are the references.  These tests run where the extension is built
(``pip install -r requirements.txt`` compiles it) and are skipped, with the reason shown, where
it is not; on CI (``CI`` set) the build itself is checked.
"""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l3_atom.stream_processing import records_build
from l3_atom.stream_processing.standardiser import Output, exact
from l3_atom.topics import LOB
from tests.compiled import compiled

_levels_c, needs_c = compiled("l3_atom.stream_processing._levels_c", "the C loop of book_levels")

KEY = "binance_BTC-USDT"
TEMPLATE = records_build.lob_template(
    exchange="binance", symbol="BTC-USDT", is_snapshot=False, atom_timestamp=1, sequence=7, event_timestamp=2
)
# Texts that are plain numbers, and every other form Decimal reads or refuses.
PLAIN = ["0", "-0", "0.0", "1.", ".5", "-.5", "30004.27000000", "-0.00000001", "007", "1" * 60, "1.2.3", "-", ".",
         "-1-2", "1..2", "--1"]
OTHER_TEXT = ["", " 1", "1 ", "1_000", "1E+3", "1e-7", "NaN", "-nan", "sNaN", "Infinity", "-inf", "１２", "+1", "0x1",
              "abc"]
ODD = [None, 1, -5, 0, True, 1.5, b"1", ["1"], Decimal("1.50"), Decimal("-0"), Decimal("NaN"), Decimal("sNaN"),
       Decimal("-Infinity"), Decimal("1E+3")]


class Text(str):
    """A str subclass: exact() refuses it (only an exact str is read)."""


values = st.one_of(st.sampled_from(PLAIN + OTHER_TEXT + ODD), st.decimals(allow_nan=True).map(str),
                   st.from_regex(r"-?[0-9]{0,25}(\.[0-9]{0,20})?", fullmatch=True), st.just(Text("1.5")))
level = st.one_of(
    st.lists(values, min_size=0, max_size=4),
    st.lists(values, min_size=2, max_size=3).map(tuple),
    st.dictionaries(st.sampled_from([0, 1, "price"]), values, max_size=2),
    st.sampled_from([None, 5, "12", b"12"]),
)


def outcome(build: Any, levels: list) -> tuple[str, Any]:
    """What building ``levels`` gives: the outputs (their records, each Decimal with its text), or the error."""
    outputs: list[Output] = []
    try:
        build(outputs, levels)
    except Exception as exc:  # noqa: BLE001 - the point is comparing whatever either raises
        return "raised", (type(exc), str(exc))
    return "built", [
        (type(out), out.topic, out.key, {name: (type(v), str(v)) for name, v in out.record.items()})
        for out in outputs
    ]


def in_c(outputs: list[Output], levels: list) -> None:
    _levels_c.lob_levels(outputs, TEMPLATE, Output, LOB, KEY, "bid", levels, exact)


def in_python(outputs: list[Output], levels: list) -> None:
    records_build._python_levels(outputs, TEMPLATE, KEY, "bid", levels, exact, exact)


@needs_c
@settings(max_examples=600, deadline=None)
@given(st.lists(level, max_size=6))
def test_c_levels_match_the_python_loop(levels: list) -> None:
    assert outcome(in_c, levels) == outcome(in_python, levels)


SIDES = {"buy": "bid", "sell": "ask"}


def side_of(name: Any) -> str:
    """A venue's side function: its names, or its own error (as Coinbase's and Gemini's ``book_side``)."""
    try:
        return SIDES[name]
    except (KeyError, TypeError):
        raise ValueError(f"side must be 'buy' or 'sell', got {name!r}") from None


side_names = st.sampled_from(["buy", "sell", "bid", "", None, 1, ["buy"], Text("buy")])
sided_level = st.one_of(
    st.tuples(side_names, values, values).map(list),
    st.lists(st.one_of(side_names, values), max_size=4),
    st.tuples(side_names, values, values),
    st.sampled_from([None, {}, "buy"]),
)


def sided_in_c(outputs: list[Output], levels: list) -> None:
    _levels_c.lob_sided_levels(outputs, TEMPLATE, Output, LOB, KEY, SIDES, side_of, levels, exact)


def sided_in_python(outputs: list[Output], levels: list) -> None:
    records_build._python_sided_levels(outputs, TEMPLATE, KEY, side_of, levels)


@needs_c
@settings(max_examples=600, deadline=None)
@given(st.lists(sided_level, max_size=6))
def test_c_sided_levels_match_the_python_loop(levels: list) -> None:
    assert outcome(sided_in_c, levels) == outcome(sided_in_python, levels)


@needs_c
def test_sided_levels_take_each_side_from_the_level() -> None:
    outputs: list[Output] = []
    sided_in_c(outputs, [["sell", "1.10", "2"], ("buy", "3", "0.00")])
    assert [(o.record["side"], str(o.record["price"]), str(o.record["size"])) for o in outputs] == [
        ("ask", "1.10", "2"), ("bid", "3", "0.00")]
    with pytest.raises(ValueError, match="side must be 'buy' or 'sell', got 'hold'"):
        sided_in_c([], [["hold", "1", "1"]])


@needs_c
@pytest.mark.parametrize("text", PLAIN + OTHER_TEXT)
def test_each_text_form_is_read_as_exact_reads_it(text: str) -> None:
    assert outcome(in_c, [[text, "1"], ["2", text]]) == outcome(in_python, [[text, "1"], ["2", text]])


@needs_c
def test_records_are_copies_of_the_template_with_their_level() -> None:
    outputs: list[Output] = []
    _levels_c.lob_levels(outputs, TEMPLATE, Output, LOB, KEY, "ask", (["1.10", "2"], ("3", Decimal("4.0"))), exact)
    assert [type(out) for out in outputs] == [Output, Output]
    assert outputs[0].record == {**TEMPLATE, "side": "ask", "price": Decimal("1.10"), "size": Decimal(2)}
    assert str(outputs[0].record["price"]) == "1.10"
    assert outputs[1].record["size"] == Decimal("4.0") and outputs[1].record is not outputs[0].record
    assert TEMPLATE["side"] == "" and TEMPLATE["price"] == 0


def test_book_levels_is_the_same_with_or_without_c(monkeypatch: pytest.MonkeyPatch) -> None:
    """book_levels with the C loop (where built) and with the Python loop alone: the same outputs."""
    args = {"exchange": "binance", "symbol": "BTC-USDT", "key": KEY, "bids": [["1.5", "2"], ["1.4", "0"]],
            "asks": [["1.6", "3.00"]], "is_snapshot": True, "atom_timestamp": 5, "sequence": 9, "checksum": 123}
    built = records_build.book_levels(**args)
    monkeypatch.setattr(records_build, "_levels_c", None)
    assert records_build.book_levels(**args) == built
    assert [out.record["checksum"] for out in built] == [None, None, 123]


def test_ci_builds_the_levels_loop() -> None:
    """On CI (``CI`` set) ``pip install -r requirements.txt`` must have compiled the extension."""
    if not os.environ.get("CI"):
        pytest.skip("CI is not set: a machine without a C compiler may run the Python loop alone")
    assert _levels_c is not None, "pip install -r requirements.txt did not build _levels_c"


def test_sided_outputs_are_the_same_with_or_without_c(monkeypatch: pytest.MonkeyPatch) -> None:
    """lob_sided_outputs with the C loop (where built) and with the Python loop alone: the same outputs."""
    changes = [["buy", "1.5", "2"], ["sell", "1.6", "0.000"]]
    built: list[Output] = []
    records_build.lob_sided_outputs(built, TEMPLATE, KEY, SIDES, side_of, changes)
    monkeypatch.setattr(records_build, "_levels_c", None)
    alone: list[Output] = []
    records_build.lob_sided_outputs(alone, TEMPLATE, KEY, SIDES, side_of, changes)
    assert alone == built and [o.record["side"] for o in built] == ["bid", "ask"]
