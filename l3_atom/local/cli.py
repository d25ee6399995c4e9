"""``runner.py local``: the whole L3 Atom in one process, no Kafka.

    runner.py local --source coinbase --symbol BTC.USD --symbol ETH.USD \\
                    --source binance --symbol ETH.USDT [--feeds lob_l3,trades_l3] \\
                    [--jsonl FILE] [--avro DIR] [--parquet DIR] [--serve [HOST:]PORT]

``--symbol``, ``--symbols-file``, ``--all-symbols`` (with ``--quote`` and
``--type``), ``--ws-url``, ``--rest-url`` and ``--channels`` belong to the
``--source`` before them (the same flags as ``runner.py connector``), so
each source can be pointed at a simulator, a replay server or the exchange
(the default).  With no output chosen, records are printed on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import gc
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from l3_atom.errors import UserError
from l3_atom.gc_tuning import tune_for_streaming
from l3_atom.observability.server import add_metrics_port, bind_metrics_socket, chosen_metrics_port
from l3_atom.symbol_selection import add_symbol_selection, symbol_request
from l3_atom.topics import COVERAGE, DEAD_LETTER, NORMALISED_TOPICS

# Only what ``add_arguments`` needs is imported here: runner.py builds every command's parser at start.
if TYPE_CHECKING:
    from l3_atom.config import CandleSettings, Settings
    from l3_atom.local.outputs import Output
    from l3_atom.local.progress import StatusLine
    from l3_atom.local.runtime import Runtime, SourceRuntime

SOURCES_DEST = "sources"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_BUS_FRAMES = 10_000
DEFAULT_CLIENT_QUEUE = 10_000
MAX_PORT = 65535


@dataclass
class SourceOptions:
    """One ``--source`` and the options that follow it."""

    name: str
    symbols: list[str] = field(default_factory=list)
    ws_url: str | None = None
    rest_url: str | None = None
    channels: str | None = None
    symbols_file: str | None = None
    all_symbols: bool = False
    quote: str | None = None
    type: str | None = None


class _StartSource(argparse.Action):
    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        value: str,
        option_string: str | None = None,
    ) -> None:
        sources = list(getattr(namespace, self.dest, None) or [])
        if any(source.name == value for source in sources):
            parser.error(f"--source {value} is given twice; put all its --symbol after one --source {value}")
        sources.append(SourceOptions(value))
        setattr(namespace, self.dest, sources)


class _SourceOption(argparse.Action):
    """``--symbol`` (repeatable), ``--ws-url``, ``--rest-url``, ``--channels``: they set the last ``--source``."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        value: str,
        option_string: str | None = None,
    ) -> None:
        sources = getattr(namespace, SOURCES_DEST, None)
        if not sources:
            parser.error(f"{option_string} must follow the --source it belongs to")
        current = sources[-1]
        if self.dest == "symbols":
            current.symbols.append(value)
        elif getattr(current, self.dest) not in (None, False):
            parser.error(f"{option_string} is given twice for --source {current.name}")
        else:
            setattr(current, self.dest, value)


class _SourceFlag(_SourceOption):
    """``--all-symbols``: set on the last ``--source``."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        value: object,
        option_string: str | None = None,
    ) -> None:
        super().__call__(parser, namespace, True, option_string)


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected [HOST:]PORT, got {text!r}") from None
    if not 0 <= number <= MAX_PORT:
        raise argparse.ArgumentTypeError(f"port must be 0 to {MAX_PORT}, got {number}")
    return host or DEFAULT_HOST, number


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``runner.py local`` options."""
    add_metrics_port(parser)
    source = parser.add_argument_group("sources (each option applies to the --source before it)")
    source.add_argument(
        "--source", action=_StartSource, dest=SOURCES_DEST, required=True, metavar="SOURCE",
        help="source id, e.g. coinbase (repeatable)",
    )
    source.add_argument(
        "--symbol", action=_SourceOption, dest="symbols", default=argparse.SUPPRESS, metavar="SYMBOL",
        help="normalised symbol, e.g. BTC.USD (repeatable)",
    )
    add_symbol_selection(source.add_argument, _SourceOption, _SourceFlag, default=argparse.SUPPRESS)
    source.add_argument(
        "--ws-url", action=_SourceOption, default=argparse.SUPPRESS, metavar="URL",
        help="websocket endpoint (default: config.ini's, else the exchange's)",
    )
    source.add_argument(
        "--rest-url", action=_SourceOption, default=argparse.SUPPRESS, metavar="URL",
        help="REST endpoint (default: config.ini's, else the exchange's)",
    )
    source.add_argument(
        "--channels", action=_SourceOption, default=argparse.SUPPRESS, metavar="LIST",
        help="comma-separated exchange channels (default: the source's)",
    )
    parser.add_argument("--feeds", metavar="LIST", help="comma-separated normalised feeds to output (default: all the sources publish)")
    outputs = parser.add_argument_group("outputs (with none chosen, human-readable lines on stdout)")
    outputs.add_argument("--stdout", action="store_true", help="human-readable lines on stdout besides other outputs")
    outputs.add_argument("--jsonl", metavar="FILE", help="append JSON lines to FILE ('-': stdout)")
    outputs.add_argument("--avro", metavar="DIR", help="Avro files DIR/<feed>/<exchange>/<symbol>/<date>/<hour>.avro")
    outputs.add_argument(
        "--parquet", metavar="DIR", help="Parquet files DIR/<feed>/<exchange>/<symbol>/<date>/<hour>.parquet"
    )
    outputs.add_argument(
        "--serve", metavar="[HOST:]PORT", type=_address,
        help=f"serve the viewer page (/), the websocket stream (/ws) and /stats; host {DEFAULT_HOST} unless given",
    )
    limits = parser.add_argument_group("memory bounds")
    limits.add_argument(
        "--bus-frames", type=_positive, default=DEFAULT_BUS_FRAMES, metavar="N",
        help="frames a source's bus holds before its connector stops reading (default %(default)s)",
    )
    limits.add_argument(
        "--client-queue", type=_positive, default=DEFAULT_CLIENT_QUEUE, metavar="N",
        help="messages a websocket client may have waiting before its records are dropped (default %(default)s)",
    )
    parser.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None,
        help="a refreshing progress line on stderr (default: when stderr is a terminal)",
    )


def choose_feeds(requested: str | None, published: Sequence[str]) -> list[str]:
    """The feeds to output: all those ``published`` (contract order), or the requested ones, checked."""
    order = {topic: index for index, topic in enumerate(NORMALISED_TOPICS)}
    available = sorted(set(published), key=lambda topic: (order.get(topic, len(order)), topic))
    if not requested:
        return available
    names = [name.strip() for name in requested.split(",") if name.strip()]
    unknown = [name for name in names if name not in available]
    if unknown:
        hints = []
        for name in unknown:
            near = difflib.get_close_matches(name, available, n=1)
            hints.append(f"{name} (did you mean {near[0]}?)" if near else name)
        raise UserError(f"no chosen source publishes {', '.join(hints)}; they publish: {', '.join(available)}")
    return [topic for topic in available if topic in names]


def build_sources(
    chosen: Sequence[SourceOptions], requested_feeds: str | None, settings: Settings, bus_frames: int
) -> tuple[list[SourceRuntime], list[str]]:
    """Check sources, symbols' spelling and feeds; the sources' runtimes and the feeds to output (nothing connects)."""
    from l3_atom.connector import feed_factory
    from l3_atom.local.runtime import SourceRuntime
    from l3_atom.sources import standardiser_class

    factories = []
    published: list[str] = []
    for options in chosen:
        try:
            channels = [c.strip() for c in options.channels.split(",") if c.strip()] if options.channels else None
            symbols, every = symbol_request(
                options.symbols, options.symbols_file, options.all_symbols, options.quote, options.type
            )
            factories.append(
                (
                    options.name,
                    feed_factory(
                        settings, options.name, symbols, options.ws_url, options.rest_url, channels, every
                    ),
                )
            )
            published += standardiser_class(options.name).topics
        except ImportError as exc:
            raise UserError(f"{options.name} is in the source registry but cannot be loaded yet: {exc}") from None
    feeds = choose_feeds(requested_feeds, published)
    sources = [
        SourceRuntime(name, make_feed, feeds, settings.max_message_bytes, bus_frames) for name, make_feed in factories
    ]
    return sources, feeds


def build_runtime(args: argparse.Namespace, settings: Settings) -> Runtime:
    """Check every option, then assemble sources and outputs (nothing connects yet)."""
    from l3_atom.local.progress import StatusLine
    from l3_atom.local.runtime import Runtime

    sources, feeds = build_sources(args.sources, args.feeds, settings, args.bus_frames)
    show_progress = sys.stderr.isatty() if args.progress is None else args.progress
    status = StatusLine() if show_progress else None
    runtime = Runtime(sources, feeds, serve=args.serve, status=status)
    for output in _outputs(args, feeds, runtime, status, settings.candles):
        runtime.add_output(output)
    return runtime


def _outputs(
    args: argparse.Namespace, feeds: list[str], runtime: Runtime, status: StatusLine | None, candles: CandleSettings
) -> list[Output]:
    from l3_atom.local.outputs.text import STDOUT_PATH, HumanOutput

    if args.stdout and args.jsonl == STDOUT_PATH:
        raise UserError("--stdout and --jsonl - would both write to stdout: choose one")
    outputs = file_outputs(args.jsonl, args.avro, args.parquet, [*feeds, DEAD_LETTER, COVERAGE])
    if args.serve:
        from l3_atom import viewer
        from l3_atom.local.outputs.queries import QueryOutput
        from l3_atom.local.outputs.websocket import WebsocketOutput

        websocket = WebsocketOutput(feeds, runtime.keys, args.client_queue, runtime.resync)
        websocket.register(runtime.http_app)
        viewer.register(runtime.http_app)
        outputs.append(websocket)
        # The processor's book, candle and coverage APIs, over the feeds this run outputs; the books are the
        # websocket's (kept once, at the stream's position its snapshots need).
        queries = QueryOutput(candles.intervals, candles.grace_ms, runtime.resync, books=websocket.books)
        queries.register(runtime.http_app)
        outputs.append(queries)
    if args.stdout or not outputs:
        outputs.append(HumanOutput(status=status))
    return outputs


def file_outputs(jsonl: str | None, avro: str | None, parquet: str | None, topics: list[str]) -> list[Output]:
    """The ``--jsonl``, ``--avro`` and ``--parquet`` outputs chosen (``runner.py local`` and ``reprocess``)."""
    from l3_atom.local.outputs.text import JsonLinesOutput

    outputs: list[Output] = []
    if jsonl:
        outputs.append(JsonLinesOutput(jsonl, hold=True))
    if avro:
        from l3_atom.local.outputs.avro import AvroFiles

        outputs.append(AvroFiles(avro))
    if parquet:
        try:
            from l3_atom.local.outputs.parquet import ParquetFiles
        except ImportError:
            raise UserError("--parquet needs pyarrow: pip install -r requirements.txt") from None
        outputs.append(ParquetFiles(parquet, topics))
    return outputs


async def _run(runtime: Runtime) -> None:
    from l3_atom.local.progress import guard_logging, restore_logging

    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)

    def stop() -> None:
        # The first signal drains and closes the outputs; a second one (default handling) quits at once.
        for sig in signals:
            loop.remove_signal_handler(sig)
        print("stopping: writing what was received (Ctrl-C again to quit now)", file=sys.stderr, flush=True)
        runtime.stop()

    for sig in signals:
        loop.add_signal_handler(sig, stop)
    # The collector as every streaming role sets it (gc_tuning.py): startup's objects out of its passes.
    thresholds = tune_for_streaming()
    swapped = guard_logging(runtime.status) if runtime.status is not None else []
    try:
        await runtime.run()
    finally:
        gc.set_threshold(*thresholds)
        restore_logging(swapped)


def main(args: argparse.Namespace) -> None:
    """Run until Ctrl-C or SIGTERM; then drain, close every output and print a summary on stderr."""
    from l3_atom.config import Settings
    from l3_atom.local.metrics import ROLE as LOCAL_ROLE
    from l3_atom.local.metrics import local_metrics_server
    from l3_atom.local.progress import summary

    settings = Settings()
    runtime = build_runtime(args, settings)
    metrics = settings.metrics
    sock = bind_metrics_socket(metrics.host, metrics.port(LOCAL_ROLE, chosen_metrics_port(args)), LOCAL_ROLE)
    if sock is not None:
        runtime.metrics = local_metrics_server(sock, runtime)
    completed = False
    try:
        asyncio.run(_run(runtime))
        completed = True
    except BrokenPipeError:
        # stdout's reader left (e.g. "| head"): a normal end; keep Python from complaining at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        completed = True
    finally:
        stats = runtime.stats()
        # A run that failed before any frame came has nothing to report but its error.
        if completed or any(source["frames"] for source in stats["sources"].values()):
            print(summary(stats), file=sys.stderr, flush=True)
