"""Structure-aware mutations of recorded frames, for the malformed-input fault scenario (pure, seeded).

A frame that parses as JSON is mutated where it matters: a field deleted, a
value retyped, a list truncated, a number pushed out of range, a string
emptied; any frame may instead have bytes flipped or be cut short.  Each
mutation names itself, so a crash it finds can be reproduced.
"""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Callable
from typing import Any

# Values a retyped field takes: every JSON type, and the empty forms of each.
RETYPED: tuple[Any, ...] = (None, True, 0, -1, 1.5, "", "x", "NaN", [], {}, [[]], {"a": None})
# Numbers out of any sensible range: past 64 bits, negative, huge and tiny floats, exponents.
OUT_OF_RANGE: tuple[Any, ...] = (
    2**70, -(2**70), -1, 0, 10**40, 1e308, -1e308, 5e-324, "1e999", "-0", "99999999999999999999999999999.1",
    "1e-30", 2**63, -(2**63) - 1,
)
MAX_FLIPS = 4
GZIP_MAGIC = b"\x1f\x8b"


def _containers(value: Any, path: tuple = ()) -> list[tuple[tuple, Any]]:
    """Every dict and list inside ``value`` with the path to it."""
    found = []
    if isinstance(value, dict | list):
        found.append((path, value))
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, child in items:
            found += _containers(child, (*path, key))
    return found


def _leaves(value: Any) -> list[tuple[Any, Any]]:
    """(container, key) of every scalar or container slot, for replacing what is there."""
    return [(c, k) for _, c in _containers(value) for k in (c if isinstance(c, dict) else range(len(c)))]


def delete_field(message: Any, rng: random.Random) -> str | None:
    dicts = [c for _, c in _containers(message) if isinstance(c, dict) and c]
    if not dicts:
        return None
    target = rng.choice(dicts)
    key = rng.choice(list(target))
    del target[key]
    return f"deleted {key!r}"


def retype(message: Any, rng: random.Random) -> str | None:
    slots = _leaves(message)
    if not slots:
        return None
    container, key = rng.choice(slots)
    container[key] = rng.choice(RETYPED)
    return f"retyped {key!r} to {container[key]!r}"


def truncate_list(message: Any, rng: random.Random) -> str | None:
    lists = [c for _, c in _containers(message) if isinstance(c, list) and c]
    if not lists:
        return None
    target = rng.choice(lists)
    keep = rng.randrange(len(target))
    del target[keep:]
    return f"list cut to {keep}"


def out_of_range(message: Any, rng: random.Random) -> str | None:
    numeric = [(c, k) for c, k in _leaves(message) if _numeric(c[k])]
    if not numeric:
        return None
    container, key = rng.choice(numeric)
    container[key] = rng.choice(OUT_OF_RANGE)
    return f"{key!r} out of range: {container[key]!r}"


def _numeric(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return isinstance(value, str)


STRUCTURAL: tuple[Callable[[Any, random.Random], str | None], ...] = (delete_field, retype, truncate_list, out_of_range)


def flip_bytes(frame: bytes, rng: random.Random) -> tuple[bytes, str]:
    data = bytearray(frame)
    for _ in range(rng.randint(1, MAX_FLIPS)):
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return bytes(data), "bytes flipped"


def cut_short(frame: bytes, rng: random.Random) -> tuple[bytes, str]:
    return frame[: rng.randrange(len(frame))], "cut short"


def mutate(frame: bytes, rng: random.Random) -> tuple[bytes, str]:
    """One mutated copy of ``frame`` and what was done to it (inside the compression of a gzip frame, mostly)."""
    if frame.startswith(GZIP_MAGIC) and rng.random() < 0.8:
        inner, what = mutate(gzip.decompress(frame), rng)
        return gzip.compress(inner), f"gzip: {what}"
    if not frame:
        return b"\x00", "empty frame given a byte"
    byte_level = rng.random() < 0.25
    if not byte_level:
        try:
            message = json.loads(frame)
        except ValueError:
            byte_level = True
    if byte_level:
        return (flip_bytes if rng.random() < 0.5 else cut_short)(frame, rng)
    for step in rng.sample(STRUCTURAL, len(STRUCTURAL)):
        what = step(message, rng)
        if what is not None:
            return json.dumps(message, separators=(",", ":")).encode(), what
    return flip_bytes(frame, rng)
