"""The Ethereum standardiser, pure: captured frames in, exact records out (no node, no broker).

``frames/trade.jsonl`` holds the frames the connector archived while
``scenario.World.trade()`` ran on ganache (``python -m tests.onchain.capture``):
one block per action, in this order: an MKR transfer, Uniswap v2 mint, two
swaps, SushiSwap mint and swap, Uniswap v3 mint, swap and burn, a Curve
exchange, a Uniswap v2 burn, the impostor's events and a plain ether transfer.
"""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from l3_atom.on_chain import abi
from l3_atom.stream_processing.standardiser import Output, StandardiseError
from l3_atom.stream_processing.standardisers.ethereum import (
    NOT_A_POOL,
    NOT_ERC20,
    UNKNOWN_AMOUNT,
    EthereumStandardiser,
    Pool,
    Token,
    asset_code,
    fits,
    price_of,
    scaled,
)
from tests.onchain.node import assert_encodable

FRAMES = Path(__file__).parent / "frames" / "trade.jsonl"
KEY = "ethereum_all_block"
TRADER = "0x90f8bf6a479f320ead074411a4b0e7944ea8c9c1"
RECEIVER = "0xffcf8fdee72ac11b5c542428b35eef5769c409f0"
WETH = "0xe78a0f7e598cc8b0bb87894b0f60dd2a88d6a8ab"
USDC = "0x5b1869d9a4c187f2eaa108f3062412ecf0526b24"
MKR = "0x254dffcd3277c0b1660f6d42efbb754edababc2b"
# The DEX records of the captured blocks, from what the scenario asked for:
# (block, topic, key, mint/burn or taker side, base amount, quote amount, price).
DEX_RECORDS = [
    (24, "dex_liquidity", "uniswap-v2_WETH.USDC", "mint", "10", "20000", None),
    (25, "dex_trades", "uniswap-v2_WETH.USDC", "sell", "1", "1990.123456", "1990.123456"),
    (26, "dex_trades", "uniswap-v2_WETH.USDC", "buy", "3", "1000", "333.333333333333333333"),
    (27, "dex_liquidity", "sushiswap_WETH.DAI", "mint", "5", "10000", None),
    (28, "dex_trades", "sushiswap_WETH.DAI", "buy", "0.5", "1000.5", "2001"),
    (29, "dex_liquidity", "uniswap-v3_WETH.USDC", "mint", "15", "30000", None),
    (30, "dex_trades", "uniswap-v3_WETH.USDC", "sell", "1.25", "2500.5", "2000.4"),
    (31, "dex_liquidity", "uniswap-v3_WETH.USDC", "burn", "0.05", "100", None),
    (32, "dex_trades", "curve_DAI.USDC", "sell", "1000", "999.75", "0.99975"),
    (33, "dex_liquidity", "uniswap-v2_WETH.USDC", "burn", "0.5", "1000", None),
]


def captured() -> list[dict[str, Any]]:
    return [json.loads(line) for line in FRAMES.read_text().splitlines()]


def frame_of(block_number: int) -> dict[str, Any]:
    """The decoded frame of one captured block (a fresh copy, to edit)."""
    for line in captured():
        frame = json.loads(line["frame"])
        if int(frame["block"]["result"]["number"], 16) == block_number:
            return frame
    raise KeyError(block_number)


def standardise(frames: list[bytes], atom_timestamp: int = 1) -> tuple[list[Output], EthereumStandardiser]:
    standardiser = EthereumStandardiser()
    outputs = [out for frame in frames for out in standardiser.standardise(frame, atom_timestamp, KEY)]
    assert_encodable(outputs)
    return outputs, standardiser


def encoded(frame: dict[str, Any]) -> bytes:
    return orjson.dumps(frame)


def of_topic(outputs: list[Output], topic: str) -> list[dict[str, Any]]:
    return [out.record for out in outputs if out.topic == topic]


def test_captured_blocks_give_every_record_exactly() -> None:
    lines = captured()
    outputs, standardiser = standardise([line["frame"].encode() for line in lines])
    counts = {topic: len(of_topic(outputs, topic)) for topic in EthereumStandardiser.topics}
    assert counts == {
        "ethereum_blocks": 13,
        "ethereum_transactions": 13,
        "ethereum_logs": 37,
        "ethereum_token_transfers": 19,
        "dex_trades": 5,
        "dex_liquidity": 5,
    }
    assert standardiser.skipped == {NOT_A_POOL: 1, NOT_ERC20: 1}
    dex = [out for out in outputs if out.topic.startswith("dex_")]
    found = [
        (
            out.record["block_number"], out.topic, out.key,
            out.record.get("event_type") or out.record["taker_side"],
            out.record.get("size", out.record.get("base_amount")),
            out.record.get("quote_size", out.record.get("quote_amount")),
            out.record.get("price"),
        )
        for out in dex
    ]  # fmt: skip
    assert found == [
        (block, topic, key, kind, Decimal(base), Decimal(quote), None if price is None else Decimal(price))
        for block, topic, key, kind, base, quote, price in DEX_RECORDS
    ]


def test_a_uniswap_v3_swap_record_field_by_field() -> None:
    outputs, _ = standardise([encoded(frame_of(30))], atom_timestamp=1795231793989608)
    [trade] = [out for out in outputs if out.topic == "dex_trades"]
    assert trade.key == "uniswap-v3_WETH.USDC"
    assert trade.record == {
        "exchange": "uniswap-v3",
        "symbol": "WETH.USDC",
        "trade_id": "0x113e20cca65e9575e1b64a3879eaaecda349f8cc14db5fa250b6620e8d627e75-2",
        "price": Decimal("2000.4"),
        "size": Decimal("1.25"),
        "quote_size": Decimal("2500.5"),
        "taker_side": "sell",
        "chain": "ethereum",
        "pool": "0x9561c133dd8580860b6b7e504bc5aa500f0f06a7",
        "base_token": WETH,
        "quote_token": USDC,
        "sender": TRADER,
        "recipient": RECEIVER,
        "block_number": 30,
        "block_hash": "0x5b5bbe93caca32c0ce760ef6d6091a5dbdf000ff4d35f79ce9a631a88fd777eb",
        "transaction_hash": "0x113e20cca65e9575e1b64a3879eaaecda349f8cc14db5fa250b6620e8d627e75",
        "log_index": 2,
        "removed": False,
        "event_timestamp": 1795231793000,
        "atom_timestamp": 1795231793989608,
    }


def test_a_uniswap_v3_mint_keeps_liquidity_ticks_and_owner() -> None:
    outputs, _ = standardise([encoded(frame_of(29))])
    [mint] = of_topic(outputs, "dex_liquidity")
    assert (mint["liquidity"], mint["tick_lower"], mint["tick_upper"], mint["owner"], mint["sender"]) == (
        "123456789", -887220, 887220, TRADER, TRADER,
    )  # fmt: skip


def test_chain_records_of_an_ether_transfer_and_a_token_transfer() -> None:
    outputs, _ = standardise([encoded(frame_of(35)), encoded(frame_of(23))])
    [block, _] = of_topic(outputs, "ethereum_blocks")
    assert block == {
        "exchange": "ethereum",
        "symbol": "ETH",
        "number": 35,
        "hash": "0x5cd7ddb9994a5b1a6f1d9b77ba81d2ffecd67d2cf293003ce036a5174b0cbf4d",
        "parent_hash": "0xe636e359db174f4fabea1b7600d1adb03508356b7bb502aa1b145bc5a55158d8",
        "miner": "0x0000000000000000000000000000000000000000",
        "gas_used": 21000,
        "gas_limit": 30000000,
        "base_fee_per_gas": "9824486",
        "transaction_count": 1,
        "size": 671,
        "blob_gas_used": None,
        "removed": False,
        "event_timestamp": 1795231794000,
        "atom_timestamp": 1,
    }
    [ether, _] = of_topic(outputs, "ethereum_transactions")
    assert ether == {
        "exchange": "ethereum",
        "symbol": "ETH",
        "hash": "0xc6536ce0d9d8d5f0e0ca3ab943aa19503eabbed3982f349b5f871cf9ab8cbbc4",
        "block_number": 35,
        "block_hash": block["hash"],
        "transaction_index": 0,
        "from_address": TRADER,
        "to_address": RECEIVER,
        "value": Decimal("1.234"),
        "value_wei": "1234000000000000000",
        "gas": 121000,
        "gas_price": "12434114",
        "max_fee_per_gas": "12434114",
        "max_priority_fee_per_gas": "1000000000",
        "effective_gas_price": "12434114",
        "gas_used": 21000,
        "success": True,
        "contract_address": None,
        "nonce": 34,
        "transaction_type": 2,
        "method_id": None,
        "removed": False,
        "event_timestamp": 1795231794000,
        "atom_timestamp": 1,
    }
    [transfer] = of_topic(outputs, "ethereum_token_transfers")
    [log] = of_topic(outputs, "ethereum_logs")
    common = {
        "block_number": 23,
        "block_hash": "0x8e157618433850036277a44d80736f5af7b16aea45b26b8f8800b350b57477af",
        "transaction_hash": "0xf20ef20c85c8ad9d6880c93e2c43d0d8cd8e7a20695896c9acdee232eac7cf49",
        "log_index": 0,
        "removed": False,
        "event_timestamp": 1795231792000,
        "atom_timestamp": 1,
    }
    assert transfer == {
        "exchange": "ethereum",
        "symbol": "MKR",
        "token": MKR,
        "from_address": TRADER,
        "to_address": RECEIVER,
        "amount": Decimal("1.5"),
        "amount_raw": "1500000000000000000",
        "decimals": 18,
        **common,
    }
    assert log == {
        "exchange": "ethereum",
        "symbol": "ETH",
        "address": MKR,
        "topic0": abi.ERC20_TRANSFER,
        "topic1": "0x000000000000000000000000" + TRADER[2:],
        "topic2": "0x000000000000000000000000" + RECEIVER[2:],
        "topic3": None,
        "data": "0x00000000000000000000000000000000000000000000000014d1120d7b160000",
        "transaction_index": 0,
        **common,
    }


def test_a_retraction_frame_gives_the_same_records_removed() -> None:
    line = captured()[7]
    frame = line["frame"].encode()
    retraction = frame.replace(b'{"removed":false,', b'{"removed":true,', 1)
    published, _ = standardise([frame])
    retracted, _ = standardise([retraction])
    assert retracted == [Output(out.topic, out.key, {**out.record, "removed": True}) for out in published], (
        "same topics, keys and fields; removed = true"
    )


def test_block_receipts_and_batched_receipts_give_the_same_records() -> None:
    """Nodes with ``eth_getBlockReceipts`` archive one response; others a batch of per-transaction ones."""
    frames = [json.loads(line["frame"]) for line in captured()]
    as_block_receipts = []
    for frame in frames:
        receipts = [response["result"] for body in frame["receipts"] for response in body]
        as_block_receipts.append({**frame, "receipts": [{"jsonrpc": "2.0", "id": 7, "result": receipts}]})
    assert standardise(list(map(encoded, as_block_receipts)))[0] == standardise(list(map(encoded, frames)))[0]


def test_unknown_decimals_leave_the_amount_null_and_skip_the_trade_counted() -> None:
    transfer = frame_of(23)
    transfer["metadata"]["tokens"][MKR] = {"symbol": None, "decimals": None}
    swap = frame_of(30)
    swap["metadata"]["tokens"][USDC]["decimals"] = None
    outputs, standardiser = standardise([encoded(transfer), encoded(swap)])
    [mkr, *_] = of_topic(outputs, "ethereum_token_transfers")
    assert (mkr["symbol"], mkr["amount"], mkr["amount_raw"], mkr["decimals"]) == (
        MKR[2:].upper(), None, "1500000000000000000", None,
    ), "no symbol(): the address names the asset"  # fmt: skip
    assert of_topic(outputs, "dex_trades") == []
    assert standardiser.skipped == {UNKNOWN_AMOUNT: 1}


@pytest.mark.parametrize(
    ("raw", "decimals", "amount"),
    [
        (1500000000000000000, 18, Decimal("1.5")),
        (1500000000000000000, 0, Decimal(1500000000000000000)),
        (1500000000000000000, 19, None),
        (10**38, 18, None),
        (2**256 - 1, 18, None),
    ],
    ids=["fits", "no decimals", "more than 18 places", "more than 20 digits", "uint256 max"],
)
def test_amounts_are_exact_or_null(raw: int, decimals: int, amount: Decimal | None) -> None:
    frame = frame_of(23)
    frame["metadata"]["tokens"][MKR]["decimals"] = decimals
    [log] = [log for body in frame["receipts"] for response in body for log in response["result"]["logs"]]
    log["data"] = f"0x{raw:064x}"
    outputs, _ = standardise([encoded(frame)])
    [transfer] = of_topic(outputs, "ethereum_token_transfers")
    assert (transfer["amount"], transfer["amount_raw"]) == (amount, str(raw))


def test_an_undecodable_event_is_skipped_counted_and_still_a_log() -> None:
    frame = frame_of(30)
    for body in frame["receipts"]:
        for response in body:
            for log in response["result"]["logs"]:
                if log["topics"][0] == abi.UNISWAP_V3_SWAP:
                    log["data"] = log["data"][:-64]
    outputs, standardiser = standardise([encoded(frame)])
    assert of_topic(outputs, "dex_trades") == []
    assert standardiser.skipped == {"v3_swap: undecodable log (MalformedEvent)": 1}
    assert any(log["topic0"] == abi.UNISWAP_V3_SWAP for log in of_topic(outputs, "ethereum_logs"))


def test_a_pool_of_an_unknown_factory_is_a_fork() -> None:
    frame = frame_of(25)
    for pool in frame["metadata"]["pools"].values():
        pool["factory"] = "0x0000000000000000000000000000000000000001"
    [trade] = of_topic(standardise([encoded(frame)])[0], "dex_trades")
    assert trade["exchange"] == "uniswap-v2-fork"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda frame: frame.update(removed="yes"),
        lambda frame: frame.update(block={"jsonrpc": "2.0", "id": 1, "error": {"code": -32000, "message": "x"}}),
        lambda frame: frame["block"]["result"].pop("number"),
        lambda frame: frame.pop("metadata"),
    ],
    ids=["removed not a boolean", "node error", "block without number", "no metadata"],
)
def test_a_malformed_frame_is_a_standardise_error(mutate: Any) -> None:
    frame = copy.deepcopy(frame_of(23))
    mutate(frame)
    with pytest.raises(StandardiseError):
        EthereumStandardiser().standardise(encoded(frame), 1, KEY)


@pytest.mark.parametrize("frame", [b"not json", b"[1,2]", b'{"type":"x"}'])
def test_frames_that_are_not_blocks_are_standardise_errors(frame: bytes) -> None:
    with pytest.raises(StandardiseError):
        EthereumStandardiser().standardise(frame, 1, KEY)


@pytest.mark.parametrize(
    ("symbol", "code"),
    [("USDC", "USDC"), ("crvUSD", "CRVUSD"), ("USDC.e", "USDCE"), ("", "AB" * 20), (None, "AB" * 20),
     ("🦄", "AB" * 20), ("X" * 33, "AB" * 20)],
)  # fmt: skip
def test_asset_codes_follow_the_symbol_grammar(symbol: str | None, code: str) -> None:
    assert asset_code("0x" + "ab" * 20, symbol) == code


def test_decimal_38_18_bounds_and_price_rounding() -> None:
    assert fits(Decimal("99999999999999999999.999999999999999999"))
    assert not fits(Decimal(100000000000000000000))
    assert not fits(Decimal("1E-19"))
    assert scaled(2**256 - 1, 18) is None, "a uint256 does not fit: raw amounts travel as strings"
    assert scaled(10**38 - 1, 18) == Decimal("99999999999999999999.999999999999999999")
    assert price_of(Decimal(1000), Decimal(3)) == Decimal("333.333333333333333333")
    assert price_of(Decimal(2000), Decimal(3)) == Decimal("666.666666666666666667")
    assert price_of(Decimal("1E+20"), Decimal("0.1")) is None


@pytest.mark.parametrize(
    ("first", "second", "symbol"),
    [("USDC", "WETH", "WETH.USDC"), ("WETH", "USDC", "WETH.USDC"), ("WETH", "WBTC", "WETH.WBTC"),
     ("WBTC", "USDT", "WBTC.USDT"), ("USDT", "USDC", "USDT.USDC"), ("LINK", "UNI", "LINK.UNI")],
)  # fmt: skip
def test_the_quote_is_the_more_quote_like_token_else_the_second(first: str, second: str, symbol: str) -> None:
    pool = Pool("0x" + "00" * 20, "uniswap-v2", Token("0x" + "0a" * 20, first, 18), Token("0x" + "0b" * 20, second, 18))
    base, quote, _, _ = pool.oriented(1, 2)
    assert f"{base.code}.{quote.code}" == symbol
