"""The keyholder's round state machine (PROTOCOL §3.10), driven by an explicit ``now`` (seconds): no clock.

open round r (anchor notice on the engine's tip) → after W: beacon r (journal "round r revealed" + exact
beacon bytes, synced, BEFORE returning it) → after O: close r (the engine's tip is the best valid block by fork
choice, or the anchor itself: void) → open r+1 on it. After the last shard a closing notice for round n+1
finalises round n and the keyholder is done. The journal lives in the store's meta keys, so a restarted
keyholder resumes where it was and re-sends (never re-signs) its beacon.

One Keyholder process holds every key it signs with (≥ threshold); multi-party signing is out of scope.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from chain.crypto import Keypair
from chain.encoding import check_bytes, check_int, check_list, check_list_max, pack, unpack
from chain.errors import DecodeError, RuleError
from consensus.engine import Engine
from consensus.messages import MAX_KEYHOLDERS, AnchorNotice, Beacon, Entry, make_anchor_notice, make_beacon
from ml.shards import SecretTask

P_OPEN = b"k/open/"          # + u32 round -> pack([opened_ms, notice bytes])
P_ENTRY = b"k/entry/"        # + u32 round + miner -> entry bytes (accepted, first come)
P_REVEAL = b"k/revealed/"    # + u32 round -> pack([revealed_ms, beacon bytes])
KEYFILE_VERSION = 1


def _u32(n: int) -> bytes:
    return n.to_bytes(4, "big")


def keyholder_file(secret_package: bytes, keypairs: Sequence[Keypair]) -> bytes:
    """The keyholder's secret file: the shard keys (ml SecretTask bytes) and the signing seeds."""
    return pack([KEYFILE_VERSION, secret_package, [kp.seed for kp in keypairs]])


def load_keyholder_file(data: bytes) -> tuple[SecretTask, tuple[Keypair, ...]]:
    f = check_list(unpack(data, max_size=64 << 20), 3, "keyholder file")
    check_int(f[0], KEYFILE_VERSION, KEYFILE_VERSION, "keyholder file version")
    if type(f[1]) is not bytes:
        raise DecodeError("keyholder file: secret package must be bytes")
    seeds = check_list_max(f[2], MAX_KEYHOLDERS, "keyholder file seeds")
    return SecretTask.decode(f[1]), tuple(Keypair.from_seed(check_bytes(s, 32, "seed")) for s in seeds)


@dataclass(frozen=True)
class RoundClosed:
    round: int
    winner: bytes | None        # header hash of the crowned block, None if void
    anchor: bytes               # anchor of the next round


@dataclass(frozen=True)
class Done:
    round: int                  # the last round (no shards left)


Action = AnchorNotice | Beacon | RoundClosed | Done


class Keyholder:
    def __init__(self, engine: Engine, secret: SecretTask | bytes, keypairs: Sequence[Keypair]) -> None:
        self.engine = engine
        self.store = engine.store
        self.genesis = engine.genesis
        self.secret = SecretTask.decode(secret) if isinstance(secret, bytes) else secret
        self.keypairs = tuple(keypairs)
        mine = {kp.public for kp in self.keypairs} & set(self.genesis.keyholders)
        if len(mine) < self.genesis.threshold:
            raise ValueError(f"keyholder holds {len(mine)} genesis keys, threshold is {self.genesis.threshold}")
        if len(self.secret.keys) != self.genesis.n_rounds:
            raise ValueError("secret package does not match the genesis task (round count differs)")
        self._resent = False

    # ------------------------------------------------------------ journal

    def _opened(self) -> tuple[int, int, AnchorNotice] | None:
        """(round, opened_ms, notice) of the last opened round."""
        items = self.store.meta_items(P_OPEN)
        if not items:
            return None
        key, value = items[-1]
        opened_ms, notice = unpack(value, max_size=1 << 16)
        return int.from_bytes(key[-4:], "big"), opened_ms, AnchorNotice.decode(notice)

    def _revealed(self, r: int) -> tuple[int, Beacon] | None:
        raw = self.store.meta_get(P_REVEAL + _u32(r))
        if raw is None:
            return None
        at_ms, beacon = unpack(raw, max_size=1 << 20)
        return at_ms, Beacon.decode(beacon)

    def accepted_entries(self, r: int) -> list[Entry]:
        return [Entry.decode(v) for _, v in self.store.meta_items(P_ENTRY + _u32(r))]

    @property
    def done(self) -> bool:
        opened = self._opened()
        return opened is not None and opened[0] > self.genesis.n_rounds

    # ------------------------------------------------------------ entries

    def on_entry(self, entry: Entry) -> bool:
        """Accept an entry for the open round: engine rule + first come, one per miner, at most E. True if
        accepted now (journaled, synced)."""
        opened = self._opened()
        if opened is None or entry.round != opened[0] or self._revealed(entry.round) is not None:
            return False
        self.engine.check_entry(entry)
        key = P_ENTRY + _u32(entry.round) + entry.miner
        if self.store.meta_get(key) is not None:
            return False
        if len(self.accepted_entries(entry.round)) >= self.genesis.params.max_entries:
            return False
        self.store.meta_put(key, entry.encode())
        return True

    # ------------------------------------------------------------ the state machine

    def _open(self, r: int, now_ms: int) -> AnchorNotice:
        anchor = self.engine.tip()
        deadline = now_ms + self.genesis.params.entry_window_s * 1000
        notice = make_anchor_notice(self.keypairs, self.genesis.chain_id, r, anchor.hash, anchor.height, deadline)
        self.store.meta_put(P_OPEN + _u32(r), pack([now_ms, notice.encode()]))
        self.engine.add_anchor_notice(notice)
        return notice

    def _reveal(self, r: int, notice: AnchorNotice, now_ms: int) -> Beacon:
        entries = [e.header_hash for e in self.accepted_entries(r)]
        beacon = make_beacon(self.keypairs, self.genesis.chain_id, r, notice.anchor_hash, entries,
                             self.secret.key(r))
        # journal first (synced): a crash after this line re-sends these exact bytes, never a new beacon
        self.store.meta_put(P_REVEAL + _u32(r), pack([now_ms, beacon.encode()]))
        self.engine.add_beacon(beacon)
        return beacon

    @staticmethod
    def _apply(add, message) -> None:
        try:
            add(message)   # a crash may have hit between the journal write and the engine update
        except RuleError:
            pass           # already superseded locally: the journal is the truth, re-sending is enough

    def step(self, now: float) -> list[Action]:
        """Advance by the clock; returns what to publish (notices, beacons) and what happened."""
        now_ms = int(now * 1000)
        params = self.genesis.params
        actions: list[Action] = []
        opened = self._opened()
        if not self._resent and opened is not None:
            # after a restart: re-announce the current round (identical bytes; peers ignore duplicates)
            self._resent = True
            actions.append(opened[2])
            self._apply(self.engine.add_anchor_notice, opened[2])
            revealed = self._revealed(opened[0])
            if revealed is not None:
                actions.append(revealed[1])
                self._apply(self.engine.add_beacon, revealed[1])
        self._resent = True
        if opened is None:
            actions.append(self._open(1, now_ms))
            return actions
        r, opened_ms, notice = opened
        if r > self.genesis.n_rounds:
            return actions + [Done(r - 1)] if not actions else actions
        revealed = self._revealed(r)
        if revealed is None:
            if now_ms >= opened_ms + params.entry_window_s * 1000:
                actions.append(self._reveal(r, notice, now_ms))
            return actions
        revealed_ms, beacon = revealed
        if now_ms < revealed_ms + params.opening_window_s * 1000:
            return actions
        tip = self.engine.tip()
        winner = tip.hash if tip.hash != beacon.anchor_hash else None
        next_notice = self._open(r + 1, now_ms)
        actions += [RoundClosed(r, winner, next_notice.anchor_hash), next_notice]
        if r + 1 > self.genesis.n_rounds:
            actions.append(Done(r))
        return actions

    def next_deadline(self) -> float | None:
        """When step() next has something to do (seconds), or None when done; lets the node sleep exactly."""
        opened = self._opened()
        if opened is None:
            return 0.0
        r, opened_ms, _ = opened
        if r > self.genesis.n_rounds:
            return None
        revealed = self._revealed(r)
        if revealed is None:
            return (opened_ms + self.genesis.params.entry_window_s * 1000) / 1000
        return (revealed[0] + self.genesis.params.opening_window_s * 1000) / 1000
