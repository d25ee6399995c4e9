"""The EVM vocabulary both halves of an on-chain source share: event topics, call selectors, words.

The connector uses it to see which logs of a block need token or pool
metadata; the standardiser uses it to decode those logs.  Decoding is by hand
(32-byte words of hex) rather than through a generic ABI decoder: the events
are few, static-typed and on the hot path.
"""

from __future__ import annotations

from eth_utils import keccak

WORD_HEX = 64
HEX_PREFIX = "0x"
ADDRESS_HEX = 40
INT256_SIGN_BIT = 1 << 255
UINT256_MODULUS = 1 << 256
# decimals() is a uint8 (early tokens return a uint256; larger values are not decimals).
MAX_DECIMALS = 255
# Curve pools holding native ether list it as this pseudo-address in coins().
NATIVE_TOKEN_PLACEHOLDER = "0xeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee"


def event_topic(signature: str) -> str:
    """``topic0`` of an event: keccak-256 of its canonical signature, as the node writes it."""
    return HEX_PREFIX + keccak(text=signature).hex()


def selector(signature: str) -> str:
    """The 4-byte call selector of a function signature, hex with 0x."""
    return HEX_PREFIX + keccak(text=signature)[:4].hex()


# topic0 of the events the standardiser decodes beyond plain logs.
ERC20_TRANSFER = event_topic("Transfer(address,address,uint256)")
UNISWAP_V2_SWAP = event_topic("Swap(address,uint256,uint256,uint256,uint256,address)")
UNISWAP_V2_MINT = event_topic("Mint(address,uint256,uint256)")
UNISWAP_V2_BURN = event_topic("Burn(address,uint256,uint256,address)")
UNISWAP_V3_SWAP = event_topic("Swap(address,address,int256,int256,uint160,uint128,int24)")
UNISWAP_V3_MINT = event_topic("Mint(address,address,int24,int24,uint128,uint256,uint256)")
UNISWAP_V3_BURN = event_topic("Burn(address,int24,int24,uint128,uint256,uint256)")
# Stableswap pools index coins with int128, cryptoswap pools with uint256; the layout is the same.
CURVE_TOKEN_EXCHANGE = event_topic("TokenExchange(address,int128,uint256,int128,uint256)")
CURVE_TOKEN_EXCHANGE_V2 = event_topic("TokenExchange(address,uint256,uint256,uint256,uint256)")

# Emitters of these events are Uniswap-style pools: token0(), token1() and factory() name them.
PAIR_EVENTS = frozenset(
    {
        UNISWAP_V2_SWAP,
        UNISWAP_V2_MINT,
        UNISWAP_V2_BURN,
        UNISWAP_V3_SWAP,
        UNISWAP_V3_MINT,
        UNISWAP_V3_BURN,
    }
)
CURVE_EVENTS = frozenset({CURVE_TOKEN_EXCHANGE, CURVE_TOKEN_EXCHANGE_V2})
# An ERC-20 Transfer has from and to indexed (3 topics) and the value as data; ERC-721's has 4 topics.
ERC20_TRANSFER_TOPICS = 3
# Curve TokenExchange data words: sold_id, tokens_sold, bought_id, tokens_bought.
CURVE_SOLD_ID, CURVE_TOKENS_SOLD, CURVE_BOUGHT_ID, CURVE_TOKENS_BOUGHT = range(4)
CURVE_WORDS = 4
# Curve pools hold at most eight coins; a larger index is not a Curve pool's.
CURVE_MAX_COINS = 8

SYMBOL = selector("symbol()")
DECIMALS = selector("decimals()")
TOKEN0 = selector("token0()")
TOKEN1 = selector("token1()")
FACTORY = selector("factory()")
COINS_UINT256 = selector("coins(uint256)")
# Early Curve pools (compound, usdt, y, busd, susd) index coins() with int128.
COINS_INT128 = selector("coins(int128)")


def words(data: str) -> list[int]:
    """The 32-byte words of ABI-encoded ``data`` (``0x``-prefixed hex) as unsigned integers."""
    body = data.removeprefix(HEX_PREFIX)
    if len(body) % WORD_HEX:
        raise ValueError(f"ABI data is not a whole number of 32-byte words: {len(body)} hex digits")
    return [int(body[i : i + WORD_HEX], 16) for i in range(0, len(body), WORD_HEX)]


def signed(word: int) -> int:
    """A word read as a two's-complement int256 (int24/int128 values are sign-extended to it)."""
    return word - UINT256_MODULUS if word & INT256_SIGN_BIT else word


def address_word(word: int | str) -> str:
    """The address held in a word or a topic, lower-case hex as nodes write addresses."""
    value = int(word, 16) if isinstance(word, str) else word
    if value >> (ADDRESS_HEX * 4):
        raise ValueError(f"not an address: {value:#x}")
    return f"{HEX_PREFIX}{value:0{ADDRESS_HEX}x}"


def encode_uint(value: int) -> str:
    """One ABI word of call data (for coins(i))."""
    return f"{value:0{WORD_HEX}x}"


def quantity(value: str) -> int:
    """A JSON-RPC quantity (``0x1b4``) as an integer."""
    if type(value) is not str or not value.startswith(HEX_PREFIX):
        raise TypeError(f"expected a 0x-prefixed hex quantity, got {value!r}")
    return int(value, 16)
