"""Print trades from the distributed pipeline's normalised topics (Kafka + Schema Registry), typed.

    python runner.py up &                      # or your own brokers, connectors and processors
    python examples/kafka_trades.py --bootstrap 127.0.0.1:9092 --registry http://127.0.0.1:8081 --limit 20
"""

from __future__ import annotations

import argparse

from l3_atom import kafka_records
from l3_atom.consume import plain


def main(args: argparse.Namespace) -> None:
    records = kafka_records(
        [args.topic], args.bootstrap, args.registry, group_id=args.group, from_beginning=args.from_beginning
    )
    for seen, trade in enumerate(records, 1):
        print(args.topic, trade.symbol, trade.taker_side, plain(trade.size), "@", plain(trade.price), flush=True)
        if seen == args.limit:
            break


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
    parser.add_argument("--registry", required=True, help="Schema Registry URL")
    parser.add_argument("--topic", default="trades_l3", choices=["trades_l3", "trades"])
    parser.add_argument("--group", default="l3_atom_example")
    parser.add_argument("--from-beginning", action="store_true")
    parser.add_argument("--limit", type=int, default=0, help="stop after this many trades (default: never)")
    main(parser.parse_args())
