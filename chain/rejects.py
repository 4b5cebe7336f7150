"""The reject-code registry: every code a ``RuleError`` or a block verdict carries, what kind of failure it is,
and what it means. Importable by every package (a chain/ leaf module: it imports nothing of ours).

Kinds (how a node treats the peer that sent the object — PROTOCOL §3.12):
  * ``violation`` — the object breaks a rule whatever the receiver's state: the sender misbehaved;
  * ``stale``     — too late, already known, or judged against a state the sender may not share yet (another
    anchor, an earlier balance): no fault proven, soft points at most;
  * ``orphan``    — cannot be judged yet (its parent or anchor is unknown): parked, not penalised.
``state_dependent`` marks violation codes of the ledger that a loose, relayed transfer can earn innocently
(its nonce or the balance moved on): a violation inside a block, no fault of a transfer's relayer.
``consensus`` marks validity rules (PROTOCOL's code table lists exactly these); the others are node policy.
What it does NOT do: decide anything — the rules raise the codes, node/ derives its penalty sets from here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["violation", "stale", "orphan"]


@dataclass(frozen=True)
class Code:
    code: str
    kind: Kind
    consensus: bool
    meaning: str
    state_dependent: bool = False
    tx: bool = False        # may be the verdict on a loose transfer


def _c(code: str, kind: Kind, meaning: str, *, consensus: bool = True, state: bool = False,
       tx: bool = False) -> Code:
    return Code(code, kind, consensus, meaning, state, tx)


_ALL = (
    # ---- ledger / transfers (chain/, PROTOCOL §2)
    _c("bad-encoding", "violation", "bytes do not decode canonically (type, size, range)", tx=True),
    _c("bad-version", "violation", "unknown transfer or header version", tx=True),
    _c("bad-chain-id", "violation", "the object names another chain", tx=True),
    _c("bad-amount", "violation", "transfer amount outside [1, 2^62]", tx=True),
    _c("bad-tx-sig", "violation", "transfer signature does not verify", tx=True),
    _c("fee-too-low", "violation", "fee below the genesis min_fee", state=True, tx=True),
    _c("bad-nonce", "violation", "nonce is not the sender's next", state=True, tx=True),
    _c("insufficient-funds", "violation", "balance does not cover amount + fee", state=True, tx=True),
    _c("balance-overflow", "violation", "a credit would push a balance over 2^62", state=True, tx=True),
    _c("bad-settlement", "violation", "a settlement's window does not follow the parent's, or a move is "
                                      "malformed or overflows"),
    _c("bad-allocation", "violation", "genesis allocations unsorted, duplicated, zero or over 2^62 in total"),
    # ---- genesis (PROTOCOL §3.1)
    _c("bad-genesis", "violation", "the genesis block does not re-derive from its configuration"),
    # ---- entries, notices, beacons (PROTOCOL §3.3, §3.4)
    _c("wrong-round", "stale", "the entry's round is not the open round"),
    _c("bad-anchor", "stale", "the entry or block does not build on the round's anchor"),
    _c("bad-entry-sig", "violation", "entry signature does not verify"),
    _c("insufficient-stake", "stale", "the miner's bond account at the anchor does not cover the entry bond (and "
                                      "the bonds it still owes)"),
    _c("unbonding", "stale", "the miner asked for its bond back: it cannot enter until the bond is released"),
    _c("duplicate-entry", "stale", "the miner already entered this round"),
    _c("too-many-entries", "stale", "the round's entry table is full of larger stakes"),
    _c("bad-notice", "violation", "anchor notice malformed or for an unknown anchor"),
    _c("bad-notice-sig", "violation", "anchor notice not signed by enough keyholders"),
    _c("bad-beacon", "violation", "beacon malformed, for the wrong round, or differing from the accepted one"),
    _c("bad-beacon-sig", "violation", "beacon not signed by enough keyholders"),
    _c("equivocation", "stale", "a second, different notice or beacon for a round (keyholder fault, "
                                "not the relaying peer's)"),
    # ---- keyholder committee: the DKG's key, released shares, sealed keys (PROTOCOL §3.14)
    _c("bad-committee-key", "violation", "the committee key record of the keyholders' DKG is malformed or not "
                                         "signed by every keyholder"),
    _c("bad-key-share", "violation", "a released share fails its proof against its member's public share key, "
                                     "or the shares do not give the beacon's key (names the member)"),
    _c("bad-keyholder-material", "violation", "a task message's sealed keys are malformed or do not cover its "
                                              "new shards (or a VRF-generated or single-keyholder batch has some)"),
    _c("not-early", "stale", "a posted share is not an early release: its shard is revealed, in its release "
                             "window or unknown here", consensus=False),
    _c("sponsor-entry", "violation", "the sponsor of the round's task entered it or mined its block (it knows its "
                                     "rows)"),
    # ---- keyholder committee: co-signed rounds (PROTOCOL §3.10)
    _c("bad-committee-msg", "violation", "committee message malformed, forged, or signed by a non-keyholder"),
    _c("bad-proposal", "stale", "a member refuses a leader's notice or beacon draft that differs from its own view"),
    _c("dropped-entry", "stale", "a member refuses a beacon draft that leaves out a valid entry it holds "
                                 "(evidence against the proposer)"),
    _c("no-open-round", "stale", "no round is open for entries", consensus=False),
    # ---- blocks (PROTOCOL §3.6). Codes marked "copy" condemn one copy of a block, not the block: a block is
    # identified by its header hash, which binds neither the signature nor the payload (verdict `corrupt`)
    _c("block-too-large", "violation", "encoded block over max_block_bytes (copy)"),
    _c("bad-payload", "violation", "round payload does not decode (copy)"),
    _c("not-entered", "violation", "the block's header hash is not listed in the beacon"),
    _c("bad-claim", "violation", "the listed model hash or proof of possession does not match the block"),
    _c("bad-height", "violation", "height is not parent height + 1"),
    _c("bad-round", "violation", "round not after the parent's"),
    _c("bad-timestamp", "violation", "timestamp not after the parent's"),
    _c("bad-header-sig", "violation", "miner signature over the header does not verify (copy)"),
    _c("stale-parent", "violation", "parent no longer on the main chain within reach"),
    _c("too-many-txs", "violation", "more than max_block_txs transfers"),
    _c("bad-tx-root", "violation", "tx root does not match the transfers (copy)"),
    _c("bad-state-root", "violation", "state root does not match the state after the block"),
    _c("bad-model-hash", "violation", "model bytes do not hash to the header's model_hash (copy)"),
    _c("model-too-large", "violation", "model over model_max_bytes"),
    _c("bad-model", "violation", "model does not decode under the genesis caps for the task"),
    _c("duplicate-model", "violation", "model byte-identical to a champion or an opened model, or first listed "
                                       "by another key"),
    _c("bad-shard-commitment", "violation", "the beacon's key does not open shard r against its commitment"),
    _c("bad-score", "violation", "payload b, c or bar differ from the recomputed crowning record (copy)"),
    # (issue 21: not-better-than-champion is gone — a block that does not crown is a valid plain block)
    # ---- tasks: announcements, extensions, the schedule (PROTOCOL §3.13)
    _c("bad-task-message", "violation", "task announcement/extension bytes do not decode canonically"),
    _c("bad-task-sig", "violation", "task message not signed by threshold governance (genesis keyholder) keys"),
    _c("bad-sponsor-sig", "violation", "the announcement's sponsor signature does not verify"),
    _c("bad-task", "violation", "the announced package or initial champion does not decode (caps, spec), or an "
                                "extension's shard does not fit the task"),
    _c("unknown-task", "stale", "the extension names a task the chain does not have (yet)"),
    _c("task-replay", "stale", "the announcement or extension was already applied"),
    _c("bad-task-seq", "stale", "the extension's seq is not the task's extensions so far + 1"),
    _c("too-many-tasks", "stale", "the chain's task table, or the task's shard count, is full"),
    _c("bad-schedule", "violation", "the (task, shard) a notice, beacon or block names is not the one the "
                                    "schedule gives, or its activations do not apply"),
    _c("bad-activation", "violation", "a round payload's task messages are not the ones its beacon activates, "
                                      "or one is invalid"),
    _c("missing-activation", "stale", "a task message a statement activates is not known here yet"),
    _c("task-pool-full", "stale", "too many task messages wait for activation", consensus=False),
    # ---- verdict statuses used as codes (consensus.engine BlockVerdict, node/gossip)
    _c("stale-round", "stale", "a block of a round that is already final"),
    _c("stale", "stale", "verdict status: the block's round is final", consensus=False),
    _c("known", "stale", "verdict status: the block is already known", consensus=False),
    _c("orphan", "orphan", "verdict status: parent or anchor unknown; parked and retried", consensus=False),
    # ---- node policy (mempool, gossip)
    _c("duplicate", "stale", "already in the mempool / already received", consensus=False, tx=True),
    _c("invalid", "violation", "the object fails a check that is not a named rule (PopError)", consensus=False),
    _c("internal-error", "stale", "a bug while judging the object: logged, the peer is not blamed", consensus=False),
    _c("already-rejected", "stale", "an object this node rejected before", consensus=False),
    _c("corrupt-parked", "violation", "a parked copy of a block turned out corrupt once its parent connected",
       consensus=False),
    _c("replacement-rejected", "stale", "a replacement transfer must pay more and be the sender's last",
       consensus=False, tx=True),
    _c("nonce-gap", "stale", "the transfer's nonce is ahead of the sender's next (it waits as a tx orphan)",
       consensus=False, tx=True),
    _c("too-many-pending", "stale", "the sender has too many pending transfers", consensus=False, tx=True),
    _c("mempool-full", "stale", "mempool full and the transfer pays no more than the cheapest", consensus=False,
       tx=True),
)

CODES: dict[str, Code] = {c.code: c for c in _ALL}
assert len(CODES) == len(_ALL), "duplicate code in the registry"

CONSENSUS_CODES = frozenset(c.code for c in _ALL if c.consensus)
#: codes after which the sender is not penalised as a liar (node/engine_api.py STALE_CODES)
STALE_CODES = frozenset(c.code for c in _ALL if c.kind == "stale")
#: codes that prove a relayed transfer malformed, whatever the relayer's state (node/gossip.py TX_VIOLATIONS)
TX_VIOLATIONS = frozenset(c.code for c in _ALL if c.tx and c.kind == "violation" and not c.state_dependent)
ORPHAN_CODES = frozenset(c.code for c in _ALL if c.kind == "orphan")


def lookup(code: str) -> Code | None:
    return CODES.get(code)
