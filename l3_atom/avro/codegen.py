"""One Python function generated as source text and compiled: the scaffold of the Avro writer and reader.

``writer.py`` and ``reader.py`` each turn a schema into the source of
one function (so that a record is handled without a call per field); this
holds its lines, the objects its names are bound to, and compiles it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# The depth of a generated function's field lines: inside its ``def`` and its ``try``.
FIELD_DEPTH = 2

INDENT = "    "


def keep(cache: dict[Any, Any], key: Any, value: Any, limit: int) -> Any:
    """Store ``value`` in a generated function's ``cache`` of at most ``limit`` entries (full: it starts over)."""
    if len(cache) >= limit:
        cache.clear()
    cache[key] = value
    return value


def function_name(prefix: str, schema: dict[str, Any]) -> str:
    """``prefix`` + the record's (unqualified) name, as a Python identifier."""
    name = str(schema.get("name", "record")).rpartition(".")[2]
    return prefix + "".join(c if c.isalnum() else "_" for c in name)


class GeneratedFunction:
    """The generated function's lines and the objects its names are bound to."""

    def __init__(self, function: str, names: dict[str, Any]) -> None:
        self.function = function
        self.lines: list[str] = []
        self.names: dict[str, Any] = dict(names)

    def emit(self, depth: int, line: str) -> None:
        self.lines.append(INDENT * depth + line)

    def bind(self, name: str, value: Any) -> str:
        self.names[name] = value
        return name

    def source(self) -> str:
        return "\n".join(self.lines) + "\n"

    def compile(self, label: str) -> Callable[..., Any]:
        """The function itself; its globals are :attr:`names` (so code may rebind them later)."""
        code = compile(self.source(), f"<{label} {self.function}>", "exec")
        exec(code, self.names)  # noqa: S102 - the source is generated from a schema alone
        return self.names[self.function]

    def emit_record_fields(self, fields: list[dict[str, Any]], emit_type: Callable[[str, int, Any], None]) -> list[str]:
        """Per field, ``value = record[name]`` and the lines ``emit_type(target, index, type)`` add; the targets.

        The writer's and the validator's functions take a ``record`` dict and handle its fields in order.
        """
        targets = []
        for index, field in enumerate(fields):
            self.emit(FIELD_DEPTH, f"value = record[{field['name']!r}]")
            emit_type(f"f{index}", index, field["type"])
            targets.append(f"f{index}")
        if not fields:
            self.emit(FIELD_DEPTH, "pass")
        return targets
