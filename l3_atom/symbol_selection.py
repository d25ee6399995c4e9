"""Which symbols a connector streams: named ones (``--symbol``, ``--symbols-file``) or every listed one
(``--all-symbols``, filtered by ``--quote`` and ``--type``).

Pure: the file is read and every line checked when the command starts, so a typo is reported
before anything connects; names are checked against the venue's list by
:meth:`l3_atom.data_source.DataFeed.resolve` (an unknown one is named with its near matches),
and ``--all-symbols`` is applied to that list by :meth:`AllSymbols.select`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from l3_atom.errors import UserError
from l3_atom.tokens import InstrumentType, Symbol, SymbolError

# ``--type`` values -> the kind of symbol they select.
TYPES = {
    "spot": InstrumentType.SPOT,
    "perp": InstrumentType.PERPETUAL,
    "future": InstrumentType.FUTURE,
    "option": InstrumentType.OPTION,
}
COMMENT = "#"


@dataclass(frozen=True)
class AllSymbols:
    """Every symbol a venue lists, optionally only those with this quote asset and of this type."""

    quote: str | None = None
    kind: str | None = None

    def matches(self, name: str) -> bool:
        symbol = Symbol.parse(name)
        return (self.quote is None or symbol.quote == self.quote) and (
            self.kind is None or symbol.type is TYPES[self.kind]
        )

    def select(self, symbol_map: Mapping[str, str]) -> list[str]:
        """The listed names this selection takes, sorted."""
        return sorted(name for name in symbol_map if self.matches(name))

    def __str__(self) -> str:
        filters = [f"--quote {self.quote}"] * (self.quote is not None) + [f"--type {self.kind}"] * (self.kind is not None)
        return " ".join(["--all-symbols", *filters])


def read_symbols_file(path: str) -> list[str]:
    """The normalised symbols of ``path``, one per line; blank lines and ``#`` comments are ignored.

    A line that is not a normalised symbol is refused with its line number.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"--symbols-file {path}: cannot read it: {exc}") from None
    symbols = []
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.split(COMMENT, 1)[0].strip()
        if not entry:
            continue
        try:
            symbols.append(str(Symbol.parse(entry)))
        except SymbolError as exc:
            raise UserError(f"--symbols-file {path}, line {number}: {exc}") from None
    if not symbols:
        raise UserError(f"--symbols-file {path} names no symbol")
    return symbols


def symbol_request(
    symbols: Sequence[str],
    symbols_file: str | None = None,
    all_symbols: bool = False,
    quote: str | None = None,
    kind: str | None = None,
) -> tuple[list[str], AllSymbols | None]:
    """(named symbols, ``AllSymbols`` or None) from the command line's options, checked."""
    if kind is not None and kind not in TYPES:
        raise UserError(f"--type must be one of {', '.join(TYPES)}, got {kind!r}")
    if not all_symbols and (quote is not None or kind is not None):
        raise UserError("--quote and --type filter --all-symbols: add --all-symbols (or name symbols instead)")
    named = [str(Symbol.parse(symbol)) for symbol in symbols]
    if symbols_file is not None:
        named += read_symbols_file(symbols_file)
    if all_symbols and named:
        raise UserError("--all-symbols chooses the symbols itself: drop --symbol and --symbols-file")
    every = AllSymbols(quote.upper() if quote else None, kind) if all_symbols else None
    return _unique(named), every


def _unique(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))



# (option, takes a value, metavar, help) of the symbol-selection options of ``connector`` and ``local``.
SELECTION_OPTIONS = (
    ("--symbols-file", True, "FILE", "normalised symbols, one per line (# starts a comment)"),
    ("--all-symbols", False, None, "every symbol the venue lists, filtered by --quote and --type"),
    ("--quote", True, "ASSET", "with --all-symbols: only this quote asset, e.g. USDT"),
    ("--type", True, "|".join(TYPES), "with --all-symbols: only this kind of instrument"),
)


def add_symbol_selection(
    add_argument: Callable[..., Any], value_action: Any = "store", flag_action: Any = "store_true", **extra: Any
) -> None:
    """Add the symbol-selection options with ``add_argument``; ``runner.py local`` passes its own actions
    (which tie each option to the ``--source`` before it) and ``extra`` keywords."""
    for option, takes_value, metavar, text in SELECTION_OPTIONS:
        if takes_value:
            add_argument(option, action=value_action, metavar=metavar, help=text, **extra)
        elif flag_action == "store_true":
            add_argument(option, action=flag_action, help=text, **extra)
        else:
            add_argument(option, action=flag_action, nargs=0, help=text, **extra)
