"""The engine's entry rules (PROTOCOL §3.3), a mixin of Engine: which round is open for entries (a task round,
or a ledger round on a closed chain, issue 21), the acceptance rule every node applies before
relaying an entry (chain, open round, anchor, signature, the bond account's cover, no pending unbond request,
not the sponsor of the round's task: §3.13),
the bounded per-round entry table (the largest stakes, ties by a value secret to this node: a flood of early
entries cannot push later ones out), and a miner key's stake — the balance of its bond account at the final
anchor (§3.9) — with the settlement questions the keyholder asks (the first unsettled round, the releases).

What it does NOT do: list entries (consensus.keyholder: the candidates and the listing) or judge blocks. Same
threading rule as the engine: synchronous, called on node/'s one worker thread.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from chain.block import Header
from chain.errors import RuleError
from chain.store import ChainStore
from consensus.engine._index import ChainIndex
from consensus.engine._taskbook import TaskBook
from consensus.protocol.genesis import Genesis
from consensus.protocol.listing import admit_ranked, tie_value
from consensus.protocol.messages import AnchorNotice, Beacon, Entry
from consensus.protocol.settlement import bond_of

__all__ = ["MAX_ENTRIES_SEEN", "EntryRules", "RoundMemory"]

MAX_ENTRIES_SEEN = 4096       # per round, gossip bound: the largest stakes, ties by a secret local value


@dataclass
class RoundMemory:
    entries: dict[bytes, Entry] = field(default_factory=dict)   # miner -> entry
    sponsor: bytes | None = None                                 # the sponsor of the task the round serves
    sponsor_known: bool = False                                  # ``sponsor`` computed (None: nobody's task)


class EntryRules:
    """Mixed into Engine, which provides these."""
    store: ChainStore
    genesis: Genesis
    index: ChainIndex
    _final: Header
    _rounds: dict[int, RoundMemory]
    _tie_secret: bytes
    book: TaskBook

    _round: int

    def notice(self, r: int) -> AnchorNotice | None:
        raise NotImplementedError

    def beacon(self, r: int) -> Beacon | None:
        raise NotImplementedError

    def open_round(self) -> int:
        """The round miners should enter now (its notice applied and serving a task, beacon not yet), or 0 —
        also when every task is exhausted (an idle notice opens nothing)."""
        r = self._round
        if r < 1 or self.beacon(r) is not None:
            return 0
        notice = self.notice(r)
        if notice is None or notice.idle:
            return 0
        return r

    def ledger_round(self) -> int:
        """The LEDGER round open for entries now, or 0: every task is exhausted, the current round's notice is
        idle, on the final anchor, and not revealed yet. Its blocks are plain blocks only: they confirm
        transfers on a closed chain (issue 21, §3.13), on a single keyholder's chain and a committee's alike."""
        r = self._round
        if r < 1 or self.beacon(r) is not None:
            return 0
        notice = self.notice(r)
        if notice is None or not notice.idle or notice.anchor_hash != self._final.hash:
            return 0
        return r

    def entry_round(self) -> int:
        """The round an entry may be made for now: the open task round, else the ledger round, else 0."""
        return self.open_round() or self.ledger_round()

    def check_entry(self, entry: Entry) -> None:
        """The entry acceptance rule (§3.3) except table limits. Raises RuleError."""
        g = self.genesis
        if entry.chain_id != g.chain_id:
            raise RuleError("bad-chain-id", f"entry for chain {entry.chain_id!r}")
        if entry.round == 0 or entry.round not in (self.open_round(), self.ledger_round()):
            raise RuleError("wrong-round", f"entry for round {entry.round}, open round is "
                                           f"{self.open_round() or self.ledger_round()}")
        if entry.parent_hash != self._final.hash:
            raise RuleError("bad-anchor", "entry parent is not the open round's anchor")
        if not entry.verify_signature():
            raise RuleError("bad-entry-sig", "entry signature does not verify")
        if self.stake(entry.miner) < g.params.entry_bond:
            raise RuleError("insufficient-stake", f"miner bond {self.stake(entry.miner)} < the entry bond "
                                                  f"{g.params.entry_bond}")
        if self.index.unbonding(entry.miner, self._final.height):
            raise RuleError("unbonding", "the miner asked for its bond back: it cannot enter until released")
        if entry.miner == self._round_sponsor(entry.round):
            raise RuleError("sponsor-entry", "the sponsor of the round's task cannot enter it (it knows its rows)")

    def _round_sponsor(self, r: int) -> bytes | None:
        """The sponsor key of the task open round r serves (None when unknown here), memoised per round."""
        mem = self._rounds.setdefault(r, RoundMemory())
        if not mem.sponsor_known:
            notice = self.notice(r)
            if notice is None or notice.served is None:
                return None
            try:
                adv = self.book.advance(self.book.registry_at(self._final), self._final, r, notice.activations)
            except RuleError:
                return None          # the task messages are not all here yet: judged again on the next entry
            mem.sponsor, mem.sponsor_known = adv.before.tasks[notice.task_id].sponsor, True
        return mem.sponsor

    def stake(self, miner: bytes) -> int:
        """The balance of the miner key's bond account at the final anchor (what its entries are ranked and
        bonded by, §3.9)."""
        return self.store.state_view(self._final.hash).get_account(bond_of(miner)).balance

    def unsettled_from(self) -> int:
        """The first round no block up to the final anchor has settled (the next settlement starts there)."""
        return self.index.settled_through(self._final) + 1

    def releases(self, last: int) -> tuple[bytes, ...]:
        """The unbond requests a block on the final anchor whose settlement ends at round ``last`` releases."""
        return self.index.releases(self._final, last)

    def add_entry(self, entry: Entry) -> bool:
        """check_entry + one entry per miner key per round. True if new (relay it), False if already seen. A
        full table keeps the largest stakes, ties by a value secret to this node (not arrival order)."""
        self.check_entry(entry)
        mem = self._rounds.setdefault(entry.round, RoundMemory())
        seen = mem.entries.get(entry.miner)
        if seen is not None:
            if seen.sighash == entry.sighash:
                return False
            raise RuleError("duplicate-entry", "this miner already entered this round with another entry")
        if len(mem.entries) >= MAX_ENTRIES_SEEN:
            held = list(mem.entries.values())
            admit, evict = admit_ranked([self._entry_rank(e) for e in held], self._entry_rank(entry),
                                        MAX_ENTRIES_SEEN)
            if not admit or evict is None:
                raise RuleError("too-many-entries", "the round's entry table holds larger stakes")
            del mem.entries[held[evict].miner]
        mem.entries[entry.miner] = entry
        for old in [r for r in self._rounds if r < entry.round]:
            del self._rounds[old]
        return True

    def forget_entry(self, entry: Entry) -> None:
        """Drop ``entry`` from the round's table: this node's keyholder refused it (a rule only the keyholder
        applies: the model's claim, the bonds the key still owes). Kept, it would make the key's next entry of
        the round a duplicate-entry, and the round would wait for an entry its keyholder never lists."""
        mem = self._rounds.get(entry.round)
        seen = mem.entries.get(entry.miner) if mem is not None else None
        if seen is not None and seen.sighash == entry.sighash:
            del mem.entries[entry.miner]  # type: ignore[union-attr]

    def _entry_rank(self, entry: Entry) -> tuple[int, int]:
        return (self.stake(entry.miner), tie_value(self._tie_secret, entry.miner))
