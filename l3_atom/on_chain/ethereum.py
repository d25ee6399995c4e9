"""Ethereum as a raw source: every block, with its receipts and token metadata, into ``ethereum_raw``.

The node is any Ethereum JSON-RPC endpoint (geth, erigon, reth, nethermind, or
a provider): ``ETHEREUM_NODE_HTTP_URL`` and ``ETHEREUM_NODE_WS_URL``, with
``ETHEREUM_NODE_SECRET`` put where a URL says ``{secret}`` or else appended as
the last path segment (``https://mainnet.infura.io/v3`` becomes
``.../v3/<secret>``).  ``config.ini`` ``[ethereum]`` may set ``confirmations``
(default 0), ``max_reorg_depth`` (64), ``ws_url`` and ``rest_url``.  How
blocks, reorgs and gaps are handled: :mod:`l3_atom.on_chain.chain_feed`.
"""

from __future__ import annotations

from l3_atom.on_chain.chain_feed import ChainFeed


class Ethereum(ChainFeed):
    name = "ethereum"
    env_prefix = "ETHEREUM_NODE"
