"""L3 Atom command line: parse arguments, call into ``l3_atom``.

    python runner.py up                         the whole pipeline on this machine, offline
    python runner.py local --source coinbase --symbol BTC.USD   one process, no Kafka
    python runner.py connector --source coinbase --symbol BTC.USD
    python runner.py processor
    python runner.py symbols --source coinbase  normalised and exchange symbol names
    python runner.py consume --topic trades_l3 --from-beginning
    python runner.py gateway --port 8090       the normalised topics on a websocket, and a live viewer page
    python runner.py registry --port 8081       local Schema Registry
    python runner.py broker                     local Kafka-API broker (Tansu)
    python runner.py simulate coinbase          Coinbase exchange simulator
    python runner.py replay --recording DIR     recorded exchange traffic, served on loopback
    python runner.py reprocess --source coinbase --jsonl FILE    a raw topic's range, standardised again
    python runner.py replay-archive DIR --speed 10   local mode's Avro/Parquet files, streamed back
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import warnings

from l3_atom.config import Settings
from l3_atom.errors import UserError
from l3_atom.observability.server import add_metrics_port, chosen_metrics_port
from l3_atom.symbol_selection import add_symbol_selection

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
EXIT_USAGE = 2


def _connector(args: argparse.Namespace) -> None:
    from l3_atom.connector import run_connector
    from l3_atom.symbol_selection import symbol_request

    channels = args.channels.split(",") if args.channels else None
    symbols, every = symbol_request(args.symbol, args.symbols_file, args.all_symbols, args.quote, args.type)
    asyncio.run(run_connector(
        Settings(), args.source, symbols, args.ws_url, args.rest_url, channels, chosen_metrics_port(args), every,
    ))


def _symbols(args: argparse.Namespace) -> None:
    from l3_atom.sources import connector_class

    symbol_map = asyncio.run(connector_class(args.source).fetch_symbol_map(args.rest_url))
    for normalised in sorted(symbol_map):
        print(f"{normalised} {symbol_map[normalised]}")


def _processor(args: argparse.Namespace) -> None:
    from faust import Worker

    from l3_atom.sources import SOURCES
    from l3_atom.stream_processing.app import create_app

    app = create_app(
        Settings(), args.source or sorted(SOURCES), web_port=args.web_port, metrics_port=chosen_metrics_port(args)
    )
    Worker(app, loglevel=args.log_level.lower()).execute_from_commandline()


def _consume(args: argparse.Namespace) -> None:
    from l3_atom.consume import consume

    consume(Settings(), args.topic, args.from_beginning, args.limit, args.json)


def _gateway(args: argparse.Namespace) -> None:
    from l3_atom.gateway.service import run_gateway

    settings = Settings()
    asyncio.run(run_gateway(settings, args.host or settings.processor.web_host, args.port, args.client_queue))


def _registry(args: argparse.Namespace) -> None:
    from l3_atom.infra.schema_registry import serve

    kafka = Settings().kafka
    serve(kafka.bootstrap_servers, args.host, args.port, kafka_config=kafka.client_config())


def _broker(args: argparse.Namespace) -> None:
    from l3_atom.infra.broker import LocalBroker

    with LocalBroker(port=args.port) as broker:
        print(f"broker listening on {broker.bootstrap_servers}", flush=True)
        try:
            broker.process.wait()
        except KeyboardInterrupt:
            pass


def _simulate(args: argparse.Namespace) -> None:
    from l3_atom.sim import coinbase

    coinbase.main(args)


def _replay(args: argparse.Namespace) -> None:
    from l3_atom.sim import replay

    replay.main(args)


def _local(args: argparse.Namespace) -> None:
    from l3_atom.local import cli as local_cli

    local_cli.main(args)


def _reprocess(args: argparse.Namespace) -> None:
    from l3_atom import reprocess

    reprocess.main(
        reprocess.Request(
            args.source, args.start, args.end, args.jsonl, args.avro, args.parquet, args.topic_prefix, args.progress
        )
    )


def _replay_archive(args: argparse.Namespace) -> None:
    from l3_atom.local import archive

    archive.main(args)


def _up(args: argparse.Namespace) -> None:
    from l3_atom.infra.local_pipeline import run_local_pipeline

    run_local_pipeline(args.symbol, args.rate, args.seed, args.topic, args.workers)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="runner.py", description="L3 Atom market-data pipeline")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    commands = parser.add_subparsers(dest="command", required=True)

    connector = commands.add_parser("connector", help="stream one source's frames into its raw topic")
    connector.add_argument("--source", required=True, help="source id, e.g. coinbase")
    connector.add_argument(
        "--symbol", action="append", default=[], help="normalised symbol, e.g. BTC.USD (none for a chain)"
    )
    add_symbol_selection(connector.add_argument)
    connector.add_argument("--ws-url", help="websocket endpoint (default: the exchange's own)")
    connector.add_argument("--rest-url", help="REST endpoint (default: the exchange's own)")
    connector.add_argument("--channels", help="comma-separated exchange channels (default: the source's)")
    add_metrics_port(connector)
    connector.set_defaults(handler=_connector)

    symbols = commands.add_parser("symbols", help="list a source's symbols: normalised, then the exchange's name")
    symbols.add_argument("--source", required=True, help="source id, e.g. coinbase")
    symbols.add_argument("--rest-url", help="REST endpoint (default: the exchange's own)")
    symbols.set_defaults(handler=_symbols)

    processor = commands.add_parser("processor", help="run a Faust worker that standardises raw topics")
    processor.add_argument("--source", action="append", help="only these sources (default: all)")
    processor.add_argument("--web-port", type=int, help="serve Faust's web views on this port")
    add_metrics_port(processor)
    processor.set_defaults(handler=_processor)

    consume = commands.add_parser("consume", help="print a normalised topic's records")
    consume.add_argument("--topic", action="append", required=True, help="topic to read, e.g. trades_l3")
    consume.add_argument("--from-beginning", action="store_true", help="start at the oldest record")
    consume.add_argument("--limit", type=int, help="stop after this many records")
    consume.add_argument("--json", action="store_true", help="print JSON lines")
    consume.set_defaults(handler=_consume)

    gateway = commands.add_parser(
        "gateway", help="serve the normalised topics on a websocket (the local --serve protocol) and a viewer page"
    )
    from l3_atom.gateway import DEFAULT_CLIENT_QUEUE, DEFAULT_PORT

    gateway.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: a free one)")
    gateway.add_argument("--host", help="address to listen on (default: L3_ATOM_WEB_HOST or 127.0.0.1)")
    gateway.add_argument("--client-queue", type=int, default=DEFAULT_CLIENT_QUEUE,
                         help="messages queued per client before its records are dropped (counted, reported to it)")
    gateway.set_defaults(handler=_gateway)

    registry = commands.add_parser("registry", help="run the local Confluent-compatible Schema Registry")
    registry.add_argument("--host", default="127.0.0.1")
    registry.add_argument("--port", type=int, default=8081)
    registry.set_defaults(handler=_registry)

    broker = commands.add_parser("broker", help="run a local Kafka-API broker (Tansu, in memory)")
    broker.add_argument("--port", type=int, help="port on 127.0.0.1 (default: a free one)")
    broker.set_defaults(handler=_broker)

    simulate = commands.add_parser("simulate", help="run an exchange simulator")
    exchanges = simulate.add_subparsers(dest="exchange", required=True)
    from l3_atom.sim import coinbase as coinbase_sim

    coinbase_sim.add_arguments(exchanges.add_parser("coinbase", help="Coinbase Exchange ws-feed and REST"))
    simulate.set_defaults(handler=_simulate)

    replay = commands.add_parser("replay", help="serve a recording's REST bodies and websocket frames on loopback")
    from l3_atom.sim import replay as replay_server

    replay_server.add_arguments(replay)
    replay.set_defaults(handler=_replay)

    local = commands.add_parser(
        "local", help="connectors and standardisers in one process, no Kafka: stdout, files, a websocket stream"
    )
    from l3_atom.local import cli as local_cli

    local_cli.add_arguments(local)
    local.set_defaults(handler=_local)

    reprocess = commands.add_parser(
        "reprocess", help="a raw topic's range through today's standardisers, into files or prefixed topics"
    )
    reprocess.add_argument("--source", required=True, help="source id, e.g. coinbase: reads <source>_raw")
    reprocess.add_argument("--from", dest="start", metavar="TIME", help="ISO-8601 or ms since the epoch (default: the start)")
    reprocess.add_argument("--to", dest="end", metavar="TIME", help="exclusive; ISO-8601 or ms (default: now's end)")
    into = reprocess.add_mutually_exclusive_group(required=True)
    into.add_argument("--jsonl", metavar="FILE", help="append JSON lines to FILE ('-': stdout)")
    into.add_argument("--avro", metavar="DIR", help="hourly Avro files, as runner.py local writes them")
    into.add_argument("--parquet", metavar="DIR", help="hourly Parquet files, as runner.py local writes them")
    into.add_argument("--topic-prefix", metavar="P", help="publish to P<topic> (never the live topics)")
    reprocess.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=None,
        help="a progress bar on stderr (default: when stderr is a terminal)",
    )
    reprocess.set_defaults(handler=_reprocess)

    replay_archive = commands.add_parser(
        "replay-archive", help="stream runner.py local's Avro/Parquet files back in time order (JSON lines, websocket)"
    )
    from l3_atom.local import archive

    archive.add_arguments(replay_archive)
    replay_archive.set_defaults(handler=_replay_archive)

    up = commands.add_parser("up", help="broker, registry, simulator, connector, processor and a consumer, offline")
    up.add_argument("--symbol", action="append", help="normalised symbols (default: BTC.USD, ETH.USD)")
    up.add_argument("--rate", type=float, default=50.0, help="simulated messages per second")
    up.add_argument("--seed", type=int, default=1, help="simulator seed")
    up.add_argument("--topic", action="append", help="topics to print (default: trades_l3)")
    up.add_argument("--workers", type=int, default=1, help="processor workers")
    up.set_defaults(handler=_up)
    return parser


def _quiet_libraries() -> None:
    """Hide library noise users cannot act on: per-request HTTP logs, authlib's deprecation notice.

    confluent-kafka's schema-registry client imports an authlib module that
    warns on import; authlib puts an "always" filter first when it loads, so
    ours must come after that import to take precedence.
    """
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        from authlib.deprecate import AuthlibDeprecationWarning
    except ImportError:
        return
    warnings.filterwarnings("ignore", category=AuthlibDeprecationWarning)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format=LOG_FORMAT, stream=sys.stderr)
    _quiet_libraries()
    try:
        args.handler(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
