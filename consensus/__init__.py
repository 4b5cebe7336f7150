"""popchain consensus/: the proof-of-performance protocol (PROTOCOL.md §3) as deterministic logic, in four
layers; each imports only the ones below it (and chain/, ml/):

  consensus.keyholder  the keyholder role: the single Keyholder or a committee Member opens rounds, lists
                       entries and reveals shard keys, on a journal in the store (``load_keyholder`` /
                       ``load_member``)
  consensus.engine     one node's consensus state over its chain store: Engine (entries, notices, beacons,
                       finality, block validity and fork choice, task book, champions); node/ talks to it
                       through ONE typed interface, ``EngineApi``
  consensus.mining     what a miner needs without chain state: Template, seal, open_block
  consensus.protocol   the objects every node agrees on and the pure rules over them: genesis, messages,
                       tasks, committee messages, key shares, the crowning test, settlement, the task
                       registry, the store-free rules of a block

What it does NOT do: no sockets, no clock, no threads, no asyncio — node/ drives it, supplies ``now`` and
serialises every call on one worker thread (Engine is not thread-safe); no storage of its own beyond the meta
keys of one table (``consensus._meta``: ``c/`` engine, ``k/`` single keyholder, ``m/`` committee member).
"""

__all__ = ["engine", "keyholder", "mining", "protocol"]
