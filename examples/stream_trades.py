"""Print trades and book updates from L3 Atom inside your own asyncio program (no Kafka).

    python examples/stream_trades.py                                   # Coinbase BTC.USD, live
    python examples/stream_trades.py --ws-url ws://127.0.0.1:8765/ --rest-url http://127.0.0.1:8765 --limit 20
                                                                       # a simulator: runner.py simulate coinbase
"""

from __future__ import annotations

import argparse
import asyncio

from l3_atom import FEED_OF, stream
from l3_atom.consume import plain


async def main(args: argparse.Namespace) -> None:
    overrides = {"ws_urls": {args.source: args.ws_url}} if args.ws_url else {}
    if args.rest_url:
        overrides["rest_urls"] = {args.source: args.rest_url}
    seen = 0
    async with stream({args.source: args.symbol}, feeds=args.feeds.split(","), **overrides) as records:
        async for record in records:
            feed = FEED_OF[type(record)]
            if feed in ("trades", "trades_l3"):
                print(feed, record.symbol, record.taker_side, plain(record.size), "@", plain(record.price), flush=True)
                seen += 1
            if args.limit and seen >= args.limit:
                break


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="coinbase")
    parser.add_argument("--symbol", action="append", default=None, help="normalised symbol (default BTC.USD)")
    parser.add_argument("--feeds", default="trades_l3,lob_l3")
    parser.add_argument("--ws-url")
    parser.add_argument("--rest-url")
    parser.add_argument("--limit", type=int, default=0, help="stop after this many trades (default: never)")
    arguments = parser.parse_args()
    arguments.symbol = arguments.symbol or ["BTC.USD"]
    asyncio.run(main(arguments))
