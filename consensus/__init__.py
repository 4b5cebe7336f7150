"""popchain consensus/: the proof-of-performance protocol (PROTOCOL.md §3) as pure, deterministic logic.

What it does:
  * ``consensus.genesis``   — GenesisParams, create_genesis (from an ml/ dataset: public task + hidden shards +
    weak initial champion), load_genesis (re-derives and checks every genesis field), ledger params, model caps.
  * ``consensus.messages``  — Entry, AnchorNotice, Beacon, RoundPayload: canonical encodings via chain.encoding,
    byte caps, signatures (make_entry / make_anchor_notice / make_beacon, threshold verification).
  * ``consensus.rules``     — validate_block with the stable reject codes of §3.6 (cheap checks first, scoring
    last), bounded timestamps, the settlement moves, fork_key.
  * ``consensus.stats``     — the crowning test: exact one-sided sign test, Bonferroni over the listed entries
    (integers; crown_threshold / accepts), and shard sizing (power / rows_for_power, floats, not rules).
  * ``consensus.settlement`` — entry bonds: the forfeits a block burns before its txs.
  * ``consensus.engine``    — Engine: consensus state over a chain.store.ChainStore (beacons, notices, entries,
    fork choice within a round, finality from keyholder anchor statements, orphans, champion history,
    equivocation evidence, block templates).
  * ``consensus.keyholder`` — the keyholder's round state machine driven by an explicit ``now``; journaled,
    restart-safe (never two beacons for a round); idles when every task is exhausted, revived by a task message.
  * ``consensus.tasks`` / ``consensus.registry`` / ``consensus.taskbook`` — several tasks per chain (issue 11):
    governance-signed announcements and extensions, the task registry and round-robin schedule folded from the
    blocks, bounty escrow/payout/refund moves, and the engine's store of task messages and registries.
  * ``consensus.miner`` / ``consensus.template`` — sealing and opening helpers for miners (pure; model
    training with scikit-learn lives in ``ml.training``, the round simulator in ``benchmarks.simulator``).

What it does NOT do: no sockets, no clock, no threads, no asyncio (node/ drives it and serialises calls on one
worker thread — Engine is not thread-safe); no storage layout of its own beyond meta keys in the chain store
(prefixes ``c/`` for the engine, ``k/`` for the keyholder journal); no distributed threshold signing.
"""
