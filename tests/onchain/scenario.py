"""A small DeFi world on the local node, driven with web3: tokens, Uniswap v2/v3, SushiSwap and Curve pools.

``World.trade()`` makes one block per action and returns the records each
must give, computed here from what the test asked for (amounts, prices,
sides), not by the code under test.  Event topics and factory addresses are
the published mainnet values, typed in, so that a wrong constant in
``l3_atom.on_chain`` cannot agree with itself.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from web3 import Web3
from web3.contract import Contract

ONCHAIN = Path(__file__).parent
COMPILER = ONCHAIN / "compile.js"
COMPILE_TIMEOUT_S = 120

UNISWAP_V2_FACTORY = "0x5C69bEe701ef814a2B6a3EDD4B1652CB9cc5aA6f"
SUSHISWAP_FACTORY = "0xC0AEe478e3658e2610c5F7A4A2E1777cE9e4f2Ac"
UNISWAP_V3_FACTORY = "0x1F98431c8aD98523631AE4a59f267346ea31F984"
TOPIC_TRANSFER = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
TOPIC_V2_SWAP = "0xd78ad95fa46c994b6551d0da85fc275fe613ce37657fb8d5e3d130840159d822"
TOPIC_V2_MINT = "0x4c209b5fc8ad50758f13e2e1088ba56a560dff690a1c6fef26394f4c03821c4f"
TOPIC_V2_BURN = "0xdccd412f0b1252819cb1fd330b93224ca42612892bb3f4f789976e6d81936496"
TOPIC_V3_SWAP = "0xc42079f94a6350d7e6235f29174924f928cc2ac818eb64fed8004e115fbcca67"
TOPIC_V3_MINT = "0x7a53080ba414158be7ec69b987b5fb7d07dee101fe85488f0853ae16239d0bde"
TOPIC_V3_BURN = "0x0c396cd989a39f4459b5fa1aed6a9a8dcdbc45908acfd67e028cd568da98982c"
TOPIC_CURVE_EXCHANGE = "0x8b3e96f2b889fa771c53c981b40daf005f63f637f1869f707052d15a3dd97140"

FULL_RANGE = (-887220, 887220)
FUNDS = {"WETH": 1_000, "USDC": 10_000_000, "DAI": 10_000_000, "MKR": 100}
CURVE_USDC_RESERVE = 1_000_000
# Records the impostor's block must not give, counted as skips instead.
IMPOSTOR_SKIPS = 2


@cache
def compiled_contracts() -> dict[str, dict[str, Any]]:
    """ABI and bytecode of tests/onchain/contracts, compiled by solc-js (npm)."""
    result = subprocess.run(
        ["node", str(COMPILER)], capture_output=True, check=True, cwd=ONCHAIN, timeout=COMPILE_TIMEOUT_S
    )
    return json.loads(result.stdout)


def units(amount: str, decimals: int) -> int:
    """Base units of a human amount, exactly."""
    return int(Decimal(amount).scaleb(decimals))


def hex0x(value: Any) -> str:
    return value if isinstance(value, str) else value.to_0x_hex()


@dataclass
class Expected:
    """A record the pipeline must publish (every field but ``atom_timestamp``)."""

    topic: str
    key: str
    record: dict[str, Any]


class World:
    """Contracts deployed on the node and the accounts that use them."""

    def __init__(self, http_url: str):
        self.w3 = Web3(Web3.HTTPProvider(http_url))
        self.contracts = compiled_contracts()
        self.trader, self.receiver = self.w3.eth.accounts[:2]
        self.weth = self._deploy("TestToken", "Wrapped Ether", "WETH", 18)
        self.usdc = self._deploy("TestToken", "USD Coin", "USDC", 6)
        self.dai = self._deploy("TestToken", "Dai Stablecoin", "DAI", 18)
        self.mkr = self._deploy("LegacyToken", b"MKR".ljust(32, b"\x00"), 18)
        self.symbols = {self.weth.address: "WETH", self.usdc.address: "USDC", self.dai.address: "DAI",
                        self.mkr.address: "MKR"}  # fmt: skip
        self.decimals = {self.weth.address: 18, self.usdc.address: 6, self.dai.address: 18, self.mkr.address: 18}
        # Mainnet's USDC < WETH order: USDC is token0, so the quote is not token1 here.
        self.uniswap_v2 = self._deploy("UniswapV2Pair", UNISWAP_V2_FACTORY, self.usdc.address, self.weth.address)
        self.sushiswap = self._deploy("UniswapV2Pair", SUSHISWAP_FACTORY, self.weth.address, self.dai.address)
        self.uniswap_v3 = self._deploy("UniswapV3Pool", UNISWAP_V3_FACTORY, self.usdc.address, self.weth.address, 500)
        self.curve = self._deploy("CurvePool", [self.dai.address, self.usdc.address])
        self.impostor = self._deploy("Impostor")
        for token in (self.weth, self.usdc, self.dai, self.mkr):
            self.send(token.functions.mint(self.trader, self.amount(token, str(FUNDS[self.symbols[token.address]]))))
        for pool, tokens in (
            (self.uniswap_v2, (self.usdc, self.weth)),
            (self.sushiswap, (self.weth, self.dai)),
            (self.uniswap_v3, (self.usdc, self.weth)),
            (self.curve, (self.dai, self.usdc)),
        ):
            for token in tokens:
                self.send(token.functions.approve(pool.address, 2**256 - 1))
        self.send(self.usdc.functions.transfer(self.curve.address, units(str(CURVE_USDC_RESERVE), 6)))

    def _deploy(self, name: str, *args: Any) -> Contract:
        compiled = self.contracts[name]
        factory = self.w3.eth.contract(abi=compiled["abi"], bytecode=compiled["bytecode"])
        receipt = self.w3.eth.wait_for_transaction_receipt(factory.constructor(*args).transact({"from": self.trader}))
        return self.w3.eth.contract(address=receipt["contractAddress"], abi=compiled["abi"])

    def send(self, call: Any, sender: str | None = None) -> Any:
        """Transact and return the receipt (ganache mines it into its own block at once)."""
        receipt = self.w3.eth.wait_for_transaction_receipt(call.transact({"from": sender or self.trader}))
        assert receipt["status"] == 1, receipt
        return receipt

    def amount(self, token: Contract, human: str) -> int:
        return units(human, self.decimals[token.address])

    # -- expectations ----------------------------------------------------------------------

    def _log_fields(self, receipt: Any, topic0: str) -> dict[str, Any]:
        [log] = [log for log in receipt["logs"] if hex0x(log["topics"][0]) == topic0]
        block = self.w3.eth.get_block(receipt["blockNumber"])
        return {
            "block_number": receipt["blockNumber"],
            "block_hash": hex0x(receipt["blockHash"]),
            "transaction_hash": hex0x(receipt["transactionHash"]),
            "log_index": log["logIndex"],
            "removed": False,
            "event_timestamp": block["timestamp"] * 1000,
        }

    def _market(self, exchange: str, base: Contract, quote: Contract, pool: Contract) -> dict[str, Any]:
        return {
            "exchange": exchange,
            "symbol": f"{self.symbols[base.address]}.{self.symbols[quote.address]}",
            "chain": "ethereum",
            "pool": pool.address.lower(),
            "base_token": base.address.lower(),
            "quote_token": quote.address.lower(),
        }

    def expected_trade(
        self, receipt: Any, topic0: str, market: dict[str, Any], side: str, size: str, quote_size: str, price: str,
        recipient: str | None,
    ) -> Expected:  # fmt: skip
        fields = self._log_fields(receipt, topic0)
        record = {
            **market,
            "trade_id": f"{fields['transaction_hash']}-{fields['log_index']}",
            "price": Decimal(price),
            "size": Decimal(size),
            "quote_size": Decimal(quote_size),
            "taker_side": side,
            "sender": self.trader.lower(),
            "recipient": None if recipient is None else recipient.lower(),
            **fields,
        }
        return Expected("dex_trades", f"{market['exchange']}_{market['symbol']}", record)

    def expected_liquidity(
        self, receipt: Any, topic0: str, market: dict[str, Any], event_type: str, base: str, quote: str,
        position: dict[str, Any] | None = None, recipient: str | None = None,
    ) -> Expected:  # fmt: skip
        position = position or {"liquidity": None, "tick_lower": None, "tick_upper": None, "owner": None}
        record = {
            **market,
            "event_type": event_type,
            "base_amount": Decimal(base),
            "quote_amount": Decimal(quote),
            **position,
            "sender": self.trader.lower(),
            "recipient": None if recipient is None else recipient.lower(),
            **self._log_fields(receipt, topic0),
        }
        return Expected("dex_liquidity", f"{market['exchange']}_{market['symbol']}", record)

    # -- the actions -----------------------------------------------------------------------

    def trade(self) -> tuple[list[Expected], list[Any]]:
        """One block per action; the DEX records they must give, and every receipt."""
        w = self
        uni2 = self._market("uniswap-v2", w.weth, w.usdc, w.uniswap_v2)
        sushi = self._market("sushiswap", w.weth, w.dai, w.sushiswap)
        uni3 = self._market("uniswap-v3", w.weth, w.usdc, w.uniswap_v3)
        curve = self._market("curve", w.dai, w.usdc, w.curve)
        v3_position = {"liquidity": "123456789", "tick_lower": FULL_RANGE[0], "tick_upper": FULL_RANGE[1]}
        owner = {"owner": w.trader.lower()}
        expected: list[Expected] = []
        receipts = [w.send(w.mkr.functions.transfer(w.receiver, w.amount(w.mkr, "1.5")))]

        def act(call: Any) -> Any:
            receipts.append(w.send(call))
            return receipts[-1]

        # Uniswap v2, token0 = USDC, token1 = WETH.
        r = act(w.uniswap_v2.functions.mint(w.amount(w.usdc, "20000"), w.amount(w.weth, "10")))
        expected.append(self.expected_liquidity(r, TOPIC_V2_MINT, uni2, "mint", "10", "20000"))
        r = act(w.uniswap_v2.functions.swap(0, w.amount(w.weth, "1"), w.amount(w.usdc, "1990.123456"), 0, w.receiver))
        expected.append(
            self.expected_trade(r, TOPIC_V2_SWAP, uni2, "sell", "1", "1990.123456", "1990.123456", w.receiver)
        )
        r = act(w.uniswap_v2.functions.swap(w.amount(w.usdc, "1000"), 0, 0, w.amount(w.weth, "3"), w.trader))
        expected.append(
            self.expected_trade(r, TOPIC_V2_SWAP, uni2, "buy", "3", "1000", "333.333333333333333333", w.trader)
        )
        # SushiSwap, token0 = WETH, token1 = DAI.
        r = act(w.sushiswap.functions.mint(w.amount(w.weth, "5"), w.amount(w.dai, "10000")))
        expected.append(self.expected_liquidity(r, TOPIC_V2_MINT, sushi, "mint", "5", "10000"))
        r = act(w.sushiswap.functions.swap(0, w.amount(w.dai, "1000.5"), w.amount(w.weth, "0.5"), 0, w.trader))
        expected.append(self.expected_trade(r, TOPIC_V2_SWAP, sushi, "buy", "0.5", "1000.5", "2001", w.trader))
        # Uniswap v3, token0 = USDC, token1 = WETH.
        r = act(w.uniswap_v3.functions.mint(w.trader, *FULL_RANGE, 123456789, w.amount(w.usdc, "30000"),
                                            w.amount(w.weth, "15")))  # fmt: skip
        expected.append(
            self.expected_liquidity(r, TOPIC_V3_MINT, uni3, "mint", "15", "30000", {**v3_position, **owner})
        )
        r = act(w.uniswap_v3.functions.swap(w.receiver, -w.amount(w.usdc, "2500.5"), w.amount(w.weth, "1.25"),
                                            2**96, 10**18, -200000))  # fmt: skip
        expected.append(self.expected_trade(r, TOPIC_V3_SWAP, uni3, "sell", "1.25", "2500.5", "2000.4", w.receiver))
        r = act(w.uniswap_v3.functions.burn(*FULL_RANGE, 1000, w.amount(w.usdc, "100"), w.amount(w.weth, "0.05")))
        burn_position = {**v3_position, "liquidity": "1000", **owner}
        expected.append(self.expected_liquidity(r, TOPIC_V3_BURN, uni3, "burn", "0.05", "100", burn_position))
        # Curve, coins [DAI, USDC]: sell 1000 DAI for 999.75 USDC.
        r = act(w.curve.functions.exchange(0, 1, w.amount(w.dai, "1000"), w.amount(w.usdc, "999.75")))
        expected.append(self.expected_trade(r, TOPIC_CURVE_EXCHANGE, curve, "sell", "1000", "999.75", "0.99975", None))
        # Uniswap v2 burn to the receiver.
        r = act(w.uniswap_v2.functions.burn(w.amount(w.usdc, "1000"), w.amount(w.weth, "0.5"), w.receiver))
        expected.append(self.expected_liquidity(r, TOPIC_V2_BURN, uni2, "burn", "0.5", "1000", recipient=w.receiver))
        act(w.impostor.functions.emitBoth(w.receiver, 7))
        receipts.append(
            w.w3.eth.wait_for_transaction_receipt(
                w.w3.eth.send_transaction({"from": w.trader, "to": w.receiver, "value": units("1.234", 18)})
            )
        )
        return expected, receipts

    def transfer_mkr(self, human: str) -> Any:
        return self.send(self.mkr.functions.transfer(self.receiver, self.amount(self.mkr, human)))


def erc20_transfer_logs(receipts: list[Any]) -> int:
    """ERC-20 Transfer logs (three topics) in these receipts."""
    return sum(
        1
        for receipt in receipts
        for log in receipt["logs"]
        if hex0x(log["topics"][0]) == TOPIC_TRANSFER and len(log["topics"]) == 3
    )


def all_logs(receipts: list[Any]) -> int:
    return sum(len(receipt["logs"]) for receipt in receipts)
