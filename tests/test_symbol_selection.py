"""Thousands of symbols from the command line (issue 15): ``--symbols-file`` and ``--all-symbols`` with
``--quote``/``--type`` on ``connector`` and ``local``, their errors, and symbols spread over connections
within each venue's per-connection limits."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest

from l3_atom.data_source import UnknownSymbol
from l3_atom.errors import UserError
from l3_atom.off_chain.coinbase import Coinbase
from l3_atom.sources import SOURCES, connector_class
from l3_atom.symbol_selection import AllSymbols, read_symbols_file, symbol_request
from tests.local.helpers import LocalRun
from tests.test_cli import run

LISTED = {"BTC.USD": "BTC-USD", "ETH.USD": "ETH-USD", "ETH.BTC": "ETH-BTC", "BTC.USDT-PERP": "BTCUSDT",
          "BTC.USD-20261225": "BTC-26DEC26", "BTC.USD-20261225-100000-C": "BTC-26DEC26-100000-C"}
NO_KAFKA = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
WAIT_S = 120.0


def test_a_symbols_file_is_read_with_comments_blank_lines_and_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "symbols.txt"
    path.write_text("# my symbols\nBTC.USD\n\n  ETH.USD   # ether\nBTC.USD\n")
    assert read_symbols_file(str(path)) == ["BTC.USD", "ETH.USD", "BTC.USD"]
    assert symbol_request(["ETH.USD"], str(path)) == (["ETH.USD", "BTC.USD"], None)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("BTC.USD\nBTC-USD\n", r"line 2: 'BTC-USD' is not a normalised symbol"),
        ("# nothing\n\n", "names no symbol"),
    ],
)
def test_a_bad_symbols_file_is_refused_naming_the_line(tmp_path: Path, text: str, error: str) -> None:
    path = tmp_path / "symbols.txt"
    path.write_text(text)
    with pytest.raises(UserError, match=error):
        read_symbols_file(str(path))


def test_an_unreadable_symbols_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"--symbols-file .*missing.txt: cannot read it"):
        read_symbols_file(str(tmp_path / "missing.txt"))


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"quote": "USDT"}, "--quote and --type filter --all-symbols"),
        ({"kind": "spot"}, "--quote and --type filter --all-symbols"),
        ({"all_symbols": True, "kind": "swap"}, "--type must be one of spot, perp, future, option, got 'swap'"),
        ({"all_symbols": True, "symbols": ["BTC.USD"]}, "--all-symbols chooses the symbols itself"),
    ],
)
def test_inconsistent_options_are_refused(kwargs: dict, error: str) -> None:
    with pytest.raises(UserError, match=error):
        symbol_request(kwargs.pop("symbols", []), **kwargs)


@pytest.mark.parametrize(
    ("every", "selected"),
    [
        (AllSymbols(), sorted(LISTED)),
        (AllSymbols(quote="USD"), ["BTC.USD", "BTC.USD-20261225", "BTC.USD-20261225-100000-C", "ETH.USD"]),
        (AllSymbols(kind="spot"), ["BTC.USD", "ETH.BTC", "ETH.USD"]),
        (AllSymbols(quote="USDT", kind="perp"), ["BTC.USDT-PERP"]),
        (AllSymbols(kind="future"), ["BTC.USD-20261225"]),
        (AllSymbols(kind="option"), ["BTC.USD-20261225-100000-C"]),
    ],
)
def test_all_symbols_selects_by_quote_and_type(every: AllSymbols, selected: list[str]) -> None:
    assert every.select(LISTED) == selected
    feed = Coinbase([], None, None, every=every)
    feed.choose(LISTED)
    assert feed.requested == selected


def test_all_symbols_matching_nothing_is_a_clear_error() -> None:
    feed = Coinbase([], None, None, every=AllSymbols(quote="EUR", kind="spot"))
    with pytest.raises(UnknownSymbol, match=r"coinbase lists no symbol for --all-symbols --quote EUR --type spot"):
        feed.choose(LISTED)


def test_a_chain_has_no_symbol_list() -> None:
    with pytest.raises(UserError, match="ethereum has no symbol list"):
        run_factory("ethereum", AllSymbols())


def run_factory(source: str, every: AllSymbols) -> None:
    from l3_atom.config import Settings
    from l3_atom.connector import feed_factory

    feed_factory(Settings(), source, [], every=every)


# -- spreading symbols over connections ---------------------------------------------------------------

THOUSAND = [f"S{index:04d}" for index in range(1000)]


@pytest.mark.parametrize("source", sorted(set(SOURCES) - {"ethereum", "bybit"}))
def test_a_thousand_symbols_stay_within_each_connections_limit(source: str) -> None:
    """Every symbol is on a connection; none carries more symbols than the venue's declared limit allows.

    (Bybit groups its category-qualified names by subscribe-argument length: tests/exchanges/test_bybit.py.)
    """
    feed = connector_class(source)([], None, None)
    groups = feed.connection_groups(list(THOUSAND))
    assert {symbol for group in groups for symbol in group} == set(THOUSAND)
    limit = feed.symbols_per_connection()
    for group in groups:
        streams = getattr(group, "streams", None)  # Binance: a group per endpoint, its streams named
        if streams is not None:
            assert len(streams) <= feed.limits.streams_per_connection
        elif limit:
            assert len(group) <= limit


def test_symbols_per_connection_takes_the_tighter_limit() -> None:
    class Limited(Coinbase):
        max_symbols_per_connection = 30
        limits = replace(Coinbase.limits, streams_per_connection=100)

    assert Limited([], None, None, channels=["full", "ticker"]).symbols_per_connection() == 30
    assert Limited([], None, None, channels=["full", "ticker", "matches", "level2"]).symbols_per_connection() == 25
    assert Limited([], None, None, channels=["full"]).symbols_per_connection(channels=200) == 1
    assert [len(g) for g in Limited([], None, None, channels=["full"]).connection_groups(THOUSAND[:70])] == [30, 30, 10]


# -- the command line ---------------------------------------------------------------------------------


def test_connector_refuses_a_malformed_symbols_file_line_before_touching_kafka(tmp_path: Path) -> None:
    path = tmp_path / "symbols.txt"
    path.write_text("BTC.USD\nETH.USD\nSOL/USD\n")
    result = run("connector", "--source", "coinbase", "--symbols-file", str(path), env=NO_KAFKA)
    assert result.returncode == 2
    assert f"error: --symbols-file {path}, line 3: 'SOL/USD' is not a normalised symbol" in result.stderr
    assert "Traceback" not in result.stderr


def test_connector_refuses_a_filter_without_all_symbols() -> None:
    result = run("connector", "--source", "coinbase", "--quote", "USDT", env=NO_KAFKA)
    assert result.returncode == 2
    assert "--quote and --type filter --all-symbols" in result.stderr


@pytest.mark.timeout(300)
def test_local_names_an_unknown_symbol_of_the_file_and_streams_all_symbols_by_quote(tmp_path: Path) -> None:
    """Against the Coinbase simulator: an unknown symbol in the file is named with its near matches;
    ``--all-symbols --quote USD`` streams every USD product and nothing else."""
    path = tmp_path / "symbols.txt"
    path.write_text("BTC.USD\nETH.USDX\n")
    out = tmp_path / "records.jsonl"
    with LocalRun(tmp_path) as local:
        local.start_simulator("--seed", "3", "--rate", "200", "--products", "BTC-USD,ETH-USD,ETH-BTC")
        result = run("local", "--source", "coinbase", "--symbols-file", str(path), *local.endpoint_args(),
                     "--no-progress")
        assert result.returncode == 2
        assert "coinbase does not list ETH.USDX (did you mean: ETH.USD" in result.stderr

        local.start_local("--source", "coinbase", "--all-symbols", "--quote", "USD", *local.endpoint_args(),
                          "--feeds", "trades_l3,lob_l3", "--jsonl", str(out), "--no-progress")
        seen: set[str] = set()
        deadline = time.monotonic() + WAIT_S
        while seen != {"BTC.USD", "ETH.USD"} and time.monotonic() < deadline:
            time.sleep(0.5)
            local.check_alive("local")
            if out.exists():
                seen = {json.loads(line)["symbol"] for line in out.read_text().splitlines() if line.endswith("}")}
        local.stop("local")
    assert seen == {"BTC.USD", "ETH.USD"}, seen
    symbols = {json.loads(line)["symbol"] for line in out.read_text().splitlines() if line.endswith("}")}
    assert symbols == {"BTC.USD", "ETH.USD"}
