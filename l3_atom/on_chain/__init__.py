"""Blockchain sources.

``chain_feed``: an EVM chain's connector (one raw frame per block, reorgs
retracted, gaps backfilled); ``rpc``: node endpoints, the secret and JSON-RPC;
``metadata``: token and pool facts archived with each block; ``abi``: event
topics and word decoding, shared with the standardiser; ``topics``: the
on-chain topic names; one short module per chain (``ethereum``).
"""
