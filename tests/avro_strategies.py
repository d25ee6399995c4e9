"""Hypothesis strategies for records of the project's Avro schemas (shared by the writer and reader tests)."""

from __future__ import annotations

from decimal import Context, Decimal

from hypothesis import strategies as st

MAX_LONG = 2**63 - 1
MIN_LONG = -(2**63)
WIDE = Context(prec=100)  # the default context (28 digits) would round 38-digit decimals


@st.composite
def decimals(draw: st.DrawFn, precision: int, scale: int) -> Decimal:
    places = draw(st.integers(0, scale))
    bound = 10 ** (precision - scale + places) - 1
    return Decimal(draw(st.integers(-bound, bound))).scaleb(-places, WIDE)


def primitives() -> dict[str, st.SearchStrategy]:
    return {
        "string": st.text(max_size=40), "long": st.integers(MIN_LONG, MAX_LONG),
        "int": st.integers(-(2**31), 2**31 - 1), "boolean": st.booleans(), "bytes": st.binary(max_size=64),
    }


def values(avro_type: object, overrides: dict[str, st.SearchStrategy] | None = None) -> st.SearchStrategy:
    """Values of ``avro_type``; ``overrides`` replace the strategies of primitive types (e.g. to add edge cases)."""
    if isinstance(avro_type, list):
        return st.none() | values(avro_type[1], overrides)
    if isinstance(avro_type, dict):
        if avro_type.get("logicalType") == "decimal":
            return decimals(avro_type["precision"], avro_type["scale"])
        if avro_type["type"] == "enum":
            return st.sampled_from(avro_type["symbols"])
        return values(avro_type["type"], overrides)
    return {**primitives(), **(overrides or {})}[avro_type]
