"""The C ``encode_outputs`` encodes and counts a message's outputs as its Python reference does.

``writer.encode_outputs_in_python`` is the reference: the same Encoded tuples (same bytes), the
same counts, and on a refusal the same exception with the same message and no count at all.
The C function runs where the extension is built and is skipped, with the reason shown, where
it is not.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Any, NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from l3_atom.avro.codecs import AvroEncoder
from l3_atom.avro.validator import TopicValidator
from l3_atom.avro.writer import encode_outputs_in_python
from tests.compiled import compiled

_avro_writer_c, needs_c = compiled("l3_atom.avro._avro_writer_c", "the C Avro writer")


class Encoded(NamedTuple):
    topic: str
    key: str
    value: Any


LOB = {"exchange": "huobi", "symbol": "BTC.USDT", "side": "bid", "price": Decimal("30004.27"),
       "size": Decimal("0.5"), "is_snapshot": False, "sequence": 7, "prev_sequence": 6, "checksum": None,
       "event_timestamp": 1_700_000_000_123, "atom_timestamp": 1_700_000_000_123_456}
TRADE = {"exchange": "huobi", "symbol": "BTC.USDT", "price": Decimal("30004.27"), "size": Decimal("0.01"),
         "taker_side": "buy", "trade_id": "42", "sequence": None, "origin": None,
         "event_timestamp": 1_700_000_000_123, "atom_timestamp": 1_700_000_000_123_456}
# Records each writer refuses, each for a reason of its own.
TOO_PRECISE = {**LOB, "size": Decimal("0.0000000000000000001")}
NOT_A_SIDE = {**LOB, "side": "middle"}
NOT_AN_INT = {**LOB, "sequence": "7"}
LACKS_A_FIELD = {key: value for key, value in LOB.items() if key != "price"}
# "lob", equal to the literal but another object: counted under the same key.
ANOTHER_LOB = "lob_"[:3]


def writers() -> dict[str, Callable[[dict], Any]]:
    """C writers for lob and trades, and a Python callable (the local runtime's validator) for lob_l3."""
    lob, trades = AvroEncoder("lob", 3), AvroEncoder("trades", 9)
    return {"lob": lob.encode, "trades": trades.encode, "lob_l3": TopicValidator("lob").encode}


def outcome(encode: Callable, outputs: Any, counts: Counter) -> tuple:
    """What encoding ``outputs`` came to: the Encoded tuples or the exception, and the counts after."""
    try:
        encoded = encode(outputs, writers(), Encoded, counts)
    except Exception as exc:  # noqa: BLE001 - any exception is an outcome to compare
        return "error", (type(exc), exc.args), dict(counts)
    assert all(type(item) is Encoded for item in encoded)
    return "encoded", [tuple(item) for item in encoded], dict(counts)


def both(outputs: Callable[[], Any], counts: dict[str, int] | None = None) -> tuple:
    """The C outcome, checked equal to the reference's (``outputs`` makes a fresh sequence for each)."""
    native = outcome(_avro_writer_c.encode_outputs, outputs(), Counter(counts or {}))
    assert native == outcome(encode_outputs_in_python, outputs(), Counter(counts or {}))
    return native


@needs_c
def test_records_of_several_topics_are_encoded_in_order_and_counted() -> None:
    outputs = [("lob", "k1", LOB), ("lob", "k1", {**LOB, "side": "ask"}), ("trades", "k2", TRADE),
               ("lob", "k1", LOB), ("lob_l3", "k3", LOB), (ANOTHER_LOB, "k1", LOB)]
    kind, encoded, counts = both(lambda: outputs, {"lob": 10, "candle": 1})
    assert kind == "encoded"
    assert [(topic, key) for topic, key, _ in encoded] == [(topic, key) for topic, key, _ in outputs]
    assert encoded[0][2] == AvroEncoder("lob", 3).encode(LOB)
    assert encoded[4][2] == TopicValidator("lob").encode(LOB)  # a Python callable's own result, not bytes
    assert counts == {"lob": 14, "candle": 1, "trades": 1, "lob_l3": 1}


@needs_c
def test_no_outputs_nothing_counted() -> None:
    assert both(list, {"lob": 2}) == ("encoded", [], {"lob": 2})


@needs_c
@pytest.mark.parametrize("refused", [TOO_PRECISE, NOT_A_SIDE, NOT_AN_INT, LACKS_A_FIELD])
@pytest.mark.parametrize("topic", ["lob", "lob_l3"])
def test_a_refused_record_raises_the_writers_error_and_counts_nothing(refused: dict, topic: str) -> None:
    kind, (error, args), counts = both(
        lambda: [("lob", "k", LOB), ("trades", "k", TRADE), (topic, "k", refused)], {"lob": 5})
    assert (kind, counts) == ("error", {"lob": 5})
    assert error in (ValueError, TypeError) and args


@needs_c
def test_a_topic_without_a_writer_is_a_key_error() -> None:
    assert both(lambda: [("lob", "k", LOB), ("book_resync", "k", LOB)]) == ("error", (KeyError, ("book_resync",)), {})


@needs_c
def test_a_writer_raising_anything_else_propagates() -> None:
    def broken(record: dict) -> bytes:
        raise RuntimeError("broken writer")

    for encode in (_avro_writer_c.encode_outputs, encode_outputs_in_python):
        counts = Counter()
        with pytest.raises(RuntimeError, match="broken writer"):
            encode([("lob", "k", LOB)], {"lob": broken}, Encoded, counts)
        assert counts == Counter()


@needs_c
@pytest.mark.parametrize("outputs", [
    lambda: (output for output in [("lob", "k", LOB), ("trades", "k", TRADE)]),  # any iterable of outputs
    lambda: [["lob", "k", LOB]],  # any iterable of three
    lambda: [("lob", "k", LOB), ("lob", "k")],
    lambda: [("lob", "k", LOB, "extra")],
    lambda: [("lob", "k", LOB), 7],
    lambda: 7,
], ids=["generator", "lists", "two", "four", "not-iterable", "outputs-not-iterable"])
def test_outputs_are_unpacked_as_the_interpreter_unpacks_them(outputs: Callable[[], Any]) -> None:
    both(outputs)


def changing_writers(outputs: list, change: str) -> dict[str, Callable[[dict], bytes]]:
    """A lob writer whose first call changes the list being encoded: pops its last output, or appends one."""
    encode = AvroEncoder("lob", 3).encode
    changed = []

    def write(record: dict) -> bytes:
        if not changed:
            changed.append(outputs.pop() if change == "pop" else outputs.append(("lob", "k9", LOB)))
        return encode(record)

    return {"lob": write}


@needs_c
@pytest.mark.parametrize(("change", "encoded"), [("pop", 2), ("append", 4)])
def test_a_list_changed_while_encoded_is_read_as_its_iterator_reads_it(change: str, encoded: int) -> None:
    results = []
    for encode in (_avro_writer_c.encode_outputs, encode_outputs_in_python):
        outputs = [("lob", f"k{index}", LOB) for index in range(3)]
        counts = Counter()
        results.append(([tuple(item) for item in encode(outputs, changing_writers(outputs, change), Encoded, counts)],
                        dict(counts)))
    assert results[0] == results[1]
    assert len(results[0][0]) == encoded == results[0][1]["lob"]


RECORDS = st.sampled_from([LOB, {**LOB, "side": "ask", "sequence": None}, TRADE, TOO_PRECISE, NOT_A_SIDE,
                           LACKS_A_FIELD])
OUTPUTS = st.lists(st.tuples(st.sampled_from(["lob", "trades", "lob_l3", ANOTHER_LOB, "unknown"]),
                             st.sampled_from(["k1", "k2"]), RECORDS), max_size=12)


@needs_c
@settings(max_examples=200, deadline=None)
@given(OUTPUTS, st.dictionaries(st.sampled_from(["lob", "trades"]), st.integers(0, 5)))
def test_any_outputs_have_the_references_outcome(outputs: list, counts: dict[str, int]) -> None:
    both(lambda: outputs, counts)


@needs_c
def test_the_arguments_are_checked() -> None:
    encode = _avro_writer_c.encode_outputs
    with pytest.raises(TypeError, match="takes 4 arguments"):
        encode([], {}, Encoded)
    with pytest.raises(TypeError, match="writers must be a dict"):
        encode([], [], Encoded, Counter())
    with pytest.raises(TypeError, match="encoded_type must be a tuple type"):
        encode([], {}, list, Counter())
