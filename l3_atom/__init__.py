"""L3 Atom: crypto market data, normalised.  From Python: ``from l3_atom import stream, kafka_records``."""

from __future__ import annotations

from typing import Any

_EMBEDDING = ("stream", "kafka_records", "FEED_OF")


def __getattr__(name: str) -> Any:
    # Imported on first use: ``import l3_atom.<module>`` must not load the runtime and Faust.
    if name in _EMBEDDING:
        from l3_atom import embed

        return getattr(embed, name)
    raise AttributeError(f"module 'l3_atom' has no attribute {name!r}")
