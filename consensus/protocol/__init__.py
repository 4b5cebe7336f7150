"""consensus.protocol: what every node agrees on — the objects of the protocol with their canonical encodings,
and the pure rules over them (PROTOCOL §3.1–3.9, §3.10 messages, §3.13, §3.14). No store, no clock, no state:
each function is a deterministic function of its arguments, in integers.

Its modules are its public surface, one concept each (import them, e.g. ``from consensus.protocol.messages
import Beacon``; this package imports none of them, so a reader of one message pays for no other):

  genesis     GenesisParams, Genesis, create_genesis / create_committee_genesis, load_genesis (all checked)
  messages    Entry, AnchorNotice, Beacon, RoundPayload: encodings, byte caps, keyholder signatures
  tasks       TaskAnnouncement, TaskExtension: governance-signed task messages, escrow, check_batch_material
  committee   the keyholder committee's messages (CommitteeMsg, check_msg, leader), Evidence, StatementBook
  group       the Ed25519 prime-order group: scalars, points, hash to point, Chaum–Pedersen proofs
  dkg         the keyholders' distributed key generation: messages, the public rule, the committee key
  release     a round's point, members' proven shares, the threshold VRF output, keys sealed to the committee
  stats       the crowning test: exact sign test with Bonferroni (integers); shard sizing (floats, not a rule)
  settlement  entry bonds: the forfeits a block burns before its txs
  registry    the task registry and the round-robin schedule, folded from the chain's history
  rules       the store-free rules of a block: payload, bar, timestamp window, settlement moves, fork order

What it does NOT do: read the chain (consensus.engine validates blocks against the store), sign on a clock
(consensus.keyholder), or seal blocks (consensus.mining).
"""

__all__ = ["committee", "dkg", "genesis", "group", "messages", "registry", "release", "rules", "settlement", "stats",
           "tasks"]
