"""consensus.mining: what a miner needs to take part in a round without holding chain state (PROTOCOL
§3.3–3.6).

``Template`` (getblocktemplate-style: height, the open round's anchor, a timestamp every beacon accepts,
selected txs, tx root, the state root after the round's bond settlement, txs, reward and fees;
``build_template`` makes one from a chain store, the engine serves it), ``seal`` (a model into a signed header
+ block + entry) and, once the beacon is out, ``open_block`` (the round payload: b, c and bar scored against
the champion) and ``score_against``.

What it does NOT do: train models (ml.training), talk to a node (node.tools.miner), or judge blocks (the
engine).
"""
from consensus.mining._seal import open_block, score_against, seal
from consensus.mining._template import Template, build_template, select_txs, template_timestamp

__all__ = ["Template", "build_template", "open_block", "score_against", "seal", "select_txs",
           "template_timestamp"]
