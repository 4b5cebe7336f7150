"""One keyholder-committee member's round state machine (PROTOCOL §3.10), driven by an explicit ``now``.

n members (the genesis keyholders), threshold t. The round's phase is read from the member's own engine: no
notice for round r yet → NOTICE(r); notice r applied, no beacon → entries, then BEACON(r) once the member's
own reveal time passed (W, and at least one entry, as the single keyholder); beacon r applied → NOTICE(r+1)
after O. In each phase the leader of (round, attempt) — attempt = time since the phase became due divided by
the failover timeout — proposes; every member checks the proposal against its own view and co-signs it:
NOTICE → SIGN_NOTICE; BEACON draft → RELEASE (its co-signature on the draft together with its share of shard
key r); t releases → key → SIGN_BEACON on the draft with the key. Whoever holds t signatures on one content
assembles the ordinary AnchorNotice/Beacon, which nodes check exactly as before (threshold signatures, key
against the shard commitment). A member journals the content it signed (synced) before it sends, and never
signs two different notice or beacon contents for a round; a new leader re-proposes what it or others already
signed, so a half-signed round cannot wedge.

The rules it shares with the single keyholder (entries, settlement, reveal time) are ``KeyholderBase``'s; what a
notice serves is ``CommitteeSchedule``'s.

What it does NOT do: networking (node.committee_service) or relay checks (consensus.protocol.committee.check_msg).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from chain.crypto import Keypair
from chain.encoding import pack, unpack
from chain.errors import PopError, RuleError
from consensus._meta import P_MEMBER_ENTRY, P_MEMBER_SIGNED, u32
from consensus.engine import Engine
from consensus.keyholder._base import MAX_CANDIDATES, KeyholderBase
from consensus.keyholder._schedule import CommitteeSchedule
from consensus.protocol.committee import (
    MAX_BODY_SIZE,
    MAX_CARRIED_BEACONS,
    ZERO_KEY,
    Body,
    CommitteeMsg,
    Evidence,
    Kind,
    check_msg,
    draft_of,
    leader,
    make_msg,
    notice_body,
)
from consensus.protocol.listing import select_listing
from consensus.protocol.messages import STATEMENT_VERSION, AnchorNotice, Beacon, Entry

__all__ = ["Fetch", "Member", "Out", "Refusal", "ShareSource", "failover_ms"]

CLOCK_SLACK_MS = 2_000       # a proposed time may lie this far ahead of a member's clock
ENTRY_GRACE_MS = 500         # an entry must have reached a member this long before the reveal to be "dropped"


def failover_ms(entry_window_s: int) -> int:
    """The leader timeout: half the entry window (≥ 0.5 s), so a killed leader costs < 2 × W per round."""
    return max(500, entry_window_s * 500)


class ShareSource(Protocol):
    """This member's secret material (consensus.keyholder.GroupShares: its share of the committee's secret;
    members 0-based): its proven share of round r's point, the check of another member's, and t of them
    combined into the shard key and into the release the beacon carries."""

    def share_for(self, round: int) -> bytes: ...
    def check_share(self, member: int, round: int, share: bytes) -> None: ...   # RuleError("bad-key-share")
    def combine(self, round: int, shares: Mapping[int, bytes]) -> bytes: ...
    def release(self, round: int, shares: Mapping[int, bytes]) -> bytes: ...
    def holds(self, shard: bytes) -> bool: ...


@dataclass(frozen=True)
class Refusal:
    round: int
    kind: str                 # "notice" | "beacon"
    proposer: bytes
    code: str
    reason: str


@dataclass(frozen=True)
class Fetch:
    """Blocks this member lacks to judge a proposal like its proposer: the anchor, or openings the proposal
    settles as opened that this member's node never recorded. The node asks its peers for them (by hash); once
    they arrive the member's own view matches and it co-signs (PROTOCOL §3.10 liveness)."""
    round: int
    blocks: tuple[bytes, ...]


Out = CommitteeMsg | AnchorNotice | Beacon | Evidence | Refusal | Fetch

MAX_FETCH = 16               # block hashes one refused proposal may make a member ask for


class Member(KeyholderBase):
    """One keyholder-committee member (see the module docstring)."""

    def __init__(self, engine: Engine, keypair: Keypair, shares: ShareSource, *,
                 tie_secret: bytes | None = None) -> None:
        super().__init__(engine, tie_secret=tie_secret)
        g = self.genesis
        if keypair.public not in g.keyholders:
            raise ValueError("this key is not one of the genesis keyholders")
        self.keypair = keypair
        self.me = keypair.public
        self.index = g.keyholders.index(keypair.public)
        self.shares = shares
        self.tasks = CommitteeSchedule(engine, shares)
        self.t = g.threshold
        self.window_ms = g.params.entry_window_s * 1000
        self.failover = failover_ms(g.params.entry_window_s)
        # what arrived: (round, kind) -> signer -> (msg, body); proposals: (round, kind) -> attempt -> (msg, body)
        self.pool: dict[tuple[int, Kind], dict[bytes, tuple[CommitteeMsg, Body]]] = {}
        self.proposals: dict[tuple[int, Kind], dict[int, tuple[CommitteeMsg, Body]]] = {}
        self._did: set[tuple[int, Kind, int]] = set()     # (round, kind, attempt) sent once
        self._judged: set[bytes] = set()                  # proposal ids already judged (refusals reported once)
        self._checked: dict[bytes, tuple[int, bool]] = {}  # RELEASE id -> (round, its share's proof holds)

    # ------------------------------------------------------------ input

    def on_message(self, msg: CommitteeMsg, body: Body | None = None) -> None:
        """Take a message (check_msg already run by the relay when ``body`` is given)."""
        if body is None:
            body = check_msg(msg, self.genesis.chain_id, self.genesis.keyholders)
        if msg.round + 2 < self.engine.current_round():
            return
        if msg.kind in (Kind.PROPOSE_NOTICE, Kind.PROPOSE_BEACON):
            if msg.signer == leader(self.genesis.keyholders, msg.round, msg.attempt):
                slot = self.proposals.setdefault((msg.round, msg.kind), {})
                slot.setdefault(msg.attempt, (msg, body))
                # bounded per proposer (its two highest attempts), so a liar cannot evict honest proposals
                mine = sorted(a for a, (m, _) in slot.items() if m.signer == msg.signer)
                for a in mine[:-2]:
                    del slot[a]
                self._prune(msg.round)
            return
        self.pool.setdefault((msg.round, msg.kind), {})[msg.signer] = (msg, body)
        self._prune(msg.round)

    def _prune(self, r: int) -> None:
        """Forget rounds more than 2 behind ``r`` (everything held is bounded by n per round and kind)."""
        for table in (self.pool, self.proposals):
            for key in [k for k in table if k[0] + 2 < r]:
                del table[key]
        self._did = {d for d in self._did if d[0] + 2 >= r}
        self._checked = {k: v for k, v in self._checked.items() if v[0] + 2 >= r}

    def on_entry(self, entry: Entry, now: float) -> bool:
        """An entry the node accepted: journal it for the open round (the E largest stakes). True if kept."""
        r = self.engine.entry_round()     # the open task round, or a ledger round on a closed chain (issue 21)
        if r == 0 or entry.round != r:
            return False
        return self._keep_entry(entry, pack([int(now * 1000), entry.encode()]))

    def accepted_entries(self, r: int) -> list[Entry]:
        return self.entries(r)

    def _entry_key(self, r: int, miner: bytes) -> bytes:
        return P_MEMBER_ENTRY + u32(r) + miner

    def entries(self, r: int, before_ms: int | None = None) -> list[Entry]:
        """Entries held for round r (those received before ``before_ms`` only, if given)."""
        out = []
        for _, v in self.store.meta_items(P_MEMBER_ENTRY + u32(r)):
            received_ms, raw = unpack(v, max_size=1024)
            if before_ms is None or received_ms < before_ms:
                out.append(Entry.decode(raw))
        return out

    # ------------------------------------------------------------ journal

    def signed(self, cls: bytes, r: int) -> bytes | None:
        return self.store.meta_get(P_MEMBER_SIGNED + cls + u32(r))

    def _journal(self, cls: bytes, r: int, content: bytes) -> None:
        self.store.meta_put(P_MEMBER_SIGNED + cls + u32(r), content)   # synced, before anything is sent

    def _msg(self, kind: Kind, r: int, attempt: int, body: bytes) -> CommitteeMsg:
        msg = make_msg(self.keypair, self.genesis.chain_id, kind, r, attempt, body)
        self.on_message(msg, check_msg(msg, self.genesis.chain_id, self.genesis.keyholders))
        return msg

    # ------------------------------------------------------------ the state machine

    @property
    def done(self) -> bool:
        """Every task is exhausted (the last notice is idle) and no stored task message can revive the chain."""
        return self.phase(0)[0] == "done"

    def phase(self, now_ms: int) -> tuple[str, int, int | None]:
        """(phase, round, when it became due in ms or None if not yet): "notice", "entries", "beacon", "done".
        After an idle notice R (§3.13: nothing left to serve) the phase is "done" until a stored task message
        that this member holds the shares of applies: then notice R+1 on the same anchor is due, from a time
        every member computes alike (the idle notice's open time + O)."""
        e, g = self.engine, self.genesis
        R = e.current_round()
        if R == 0:
            return "notice", 1, g.timestamp * 1000
        beacon = e.beacon(R)
        if beacon is not None:
            return "notice", R + 1, beacon.time_ms + g.params.opening_window_s * 1000
        notice = e.notice(R)
        assert notice is not None
        if notice.idle:
            anchor = self.store.get_header(notice.anchor_hash)
            if anchor is None:
                return "done", R, None
            # a stored task message revives the chain, unless this member already released its share for the
            # LEDGER round R (issue 21): it finishes that round first (one thing signed per round)
            if self.signed(b"b", R) is None and self.tasks.schedule(anchor, R + 1)[1] != 0:
                return "notice", R + 1, notice.entry_deadline_ms - self.window_ms + g.params.opening_window_s * 1000
            # ledger round R (§3.13): staked miners enter for plain blocks; it reveals as a task round does, W
            # after its first entry. A round nobody entered waits: "done" (nothing to do until an entry comes)
            opened_ms = notice.entry_deadline_ms - self.window_ms
            ledger_due = self._reveal_at(R, opened_ms, now_ms) if now_ms else None
            if ledger_due is None or not self.entries(R):
                return "done", R, None
            return ("beacon" if now_ms >= ledger_due else "entries"), R, ledger_due
        due = self._reveal_at(R, notice.entry_deadline_ms - self.window_ms, now_ms)
        return ("beacon" if due is not None and now_ms >= due else "entries"), R, due

    def step(self, now: float) -> list[Out]:
        now_ms = int(now * 1000)
        name, r, due = self.phase(now_ms)
        if name in ("entries", "done"):
            # entries a leader's proposal carries count as received (a member that joined late holds none)
            for _, body in list(self.proposals.get((r, Kind.PROPOSE_BEACON), {}).values()):
                for x in body.entries:
                    try:
                        self.on_entry(x, now)
                    except PopError:
                        pass
            name, r, due = self.phase(now_ms)
        if name == "notice" and due is not None and now_ms >= due:
            return self._notice_phase(r, now_ms, due)
        if name == "beacon" and due is not None:
            return self._beacon_phase(r, now_ms, due)
        return []

    def next_deadline(self, now: float) -> float:
        """When step() next may act (seconds): the phase's due time, else the next attempt boundary."""
        now_ms = int(now * 1000)
        name, _, due = self.phase(now_ms)
        if due is None or name in ("done",):
            return now + 0.5
        if now_ms < due:
            return due / 1000
        return (due + ((now_ms - due) // self.failover + 1) * self.failover) / 1000

    def attempt(self, now_ms: int, due: int) -> int:
        return (max(0, now_ms - due) // self.failover) % (2**16)   # wraps after ~9 h: rotation goes on

    def _leader(self, r: int, attempt: int) -> bool:
        return leader(self.genesis.keyholders, r, attempt) == self.me

    def _quorum(self, r: int, kind: Kind, content: Any) -> list[tuple[CommitteeMsg, Body]]:
        """The pooled messages of ``kind`` for round r whose statement has sighash ``content``, grouped."""
        return [(m, b) for m, b in self.pool.get((r, kind), {}).values()
                if (b.notice or b.beacon).sighash == content]  # type: ignore[union-attr]

    def _best(self, r: int, kind: Kind) -> Any:
        """The statement of ``kind`` for round r with the most co-signatures pooled (ties: lower sighash)."""
        groups: dict[bytes, list[Any]] = {}
        for _, b in self.pool.get((r, kind), {}).values():
            stmt = b.notice or b.beacon
            groups.setdefault(stmt.sighash, []).append(stmt)  # type: ignore[union-attr]
        if not groups:
            return None
        best = min(groups, key=lambda h: (-len(groups[h]), h))
        return groups[best][0]

    def _apply(self, add, stmt, what: str) -> list[Out]:
        """Hand an assembled statement to the engine; a refusal (e.g. another one came first) is reported once."""
        try:
            add(stmt)
        except RuleError as exc:
            if stmt.sighash in self._judged:
                return []
            self._judged.add(stmt.sighash)
            return [Refusal(stmt.round, what, self.me, exc.code, f"assembled {what} refused: {exc}")]
        return [stmt]

    # ------------------------------------------------------------ notices

    def _notice_phase(self, r: int, now_ms: int, due: int) -> list[Out]:
        out: list[Out] = []
        e = self.engine
        if e.notice(r) is not None:
            return out        # assembled; waiting for its anchor to arrive
        # 1. assemble from t co-signatures on one content
        best = self._best(r, Kind.SIGN_NOTICE)
        if best is not None:
            sigs = self._quorum(r, Kind.SIGN_NOTICE, best.sighash)
            if len(sigs) >= self.t:
                notice = replace(best, signatures=tuple(sorted((m.signer, b.sig) for m, b in sigs)))
                return self._apply(e.add_anchor_notice, notice, "notice")
        attempt = self.attempt(now_ms, due)
        mine = self.signed(b"n", r)
        # 2. the leader proposes what it signed, else what others co-signed (if it may), else a fresh notice —
        # but while others' co-signed content it cannot accept yet is about, it waits up to n attempts (it may
        # lack a void round's beacon): a fresh notice now would split the co-signatures and wedge the round
        if self._leader(r, attempt) and (r, Kind.PROPOSE_NOTICE, attempt) not in self._did:
            content = AnchorNotice.decode(mine) if mine else None
            if content is None and best is not None:
                if self._notice_ok(best, now_ms, due) is None:
                    content = best
                elif attempt < len(self.genesis.keyholders) + 1:
                    return out
            self._did.add((r, Kind.PROPOSE_NOTICE, attempt))
            content = content or self._fresh_notice(r, due)
            carried = self._void_beacons(content)
            out.append(self._msg(Kind.PROPOSE_NOTICE, r, attempt, pack([notice_body(content), carried])))
        # 3. co-sign a proposal: the highest attempt we can accept (a member whose clock or phase start runs
        # ahead must not shadow the current leader's proposal)
        for a, (msg, body) in self._candidates(r, Kind.PROPOSE_NOTICE, attempt):
            proposal = body.notice
            assert proposal is not None
            if (r, Kind.SIGN_NOTICE, a) in self._did:
                break
            if mine is None:
                for b in body.beacons:      # void-round beacons we may have missed (threshold-signed)
                    try:
                        e.add_beacon(b)
                    except RuleError:
                        pass
                problem = self._notice_ok(proposal, now_ms, due)
                if problem is not None:
                    if msg.id not in self._judged:
                        self._judged.add(msg.id)
                        out.append(Refusal(r, "notice", msg.signer, "bad-proposal", problem))
                        wanted = self.missing_blocks(proposal)
                        if wanted:
                            out.append(Fetch(r, wanted))
                    continue
                if self._wait_for_cosigner(msg, Kind.SIGN_NOTICE, proposal.sighash):
                    continue       # ours, not co-signed yet: another leader's proposal may be signable
                self._journal(b"n", r, notice_body(proposal))
                mine = notice_body(proposal)
            # what we signed, again for this attempt (a different proposal is refused by resending it)
            self._did.add((r, Kind.SIGN_NOTICE, a))
            signed = AnchorNotice.decode(mine)
            out.append(self._msg(Kind.SIGN_NOTICE, r, a, pack([mine, self.keypair.sign(signed.sighash)])))
            if signed.sighash != proposal.sighash and msg.id not in self._judged:
                self._judged.add(msg.id)
                out.append(Refusal(r, "notice", msg.signer, "bad-proposal",
                                   "differs from the notice this member already signed"))
            break
        return out

    def _candidates(self, r: int, kind: Kind, attempt: int) -> list[tuple[int, tuple[CommitteeMsg, Body]]]:
        """Every proposal held for the phase, highest attempt first (members' phase starts differ — a round
        that waited for entries starts W after each member's own first entry — so attempt numbers do too)."""
        props = self.proposals.get((r, kind), {})
        return sorted(props.items(), key=lambda x: -x[0])

    def _wait_for_cosigner(self, msg: CommitteeMsg, kind: Kind, content: bytes) -> bool:
        """True for our own proposal that no other member co-signed yet: we lock on it only then, so a leader
        whose view lags (an anchor or an entry list nobody shares) does not lock itself out of the round."""
        return msg.signer == self.me and self.t > 1 and not any(
            m.signer != self.me for m, b in self.pool.get((msg.round, kind), {}).values()
            if (b.notice or b.beacon).sighash == content)  # type: ignore[union-attr]

    def _void_beacons(self, notice: AnchorNotice) -> list[bytes]:
        """Encoded beacons of the rounds the notice settles (anchor round … r − 1), newest first, capped."""
        anchor = self.store.get_header(notice.anchor_hash)
        first = max(1, anchor.round if anchor is not None else notice.round)
        out: list[bytes] = []
        size = len(notice.encode())
        for q in range(notice.round - 1, first - 1, -1):
            b = self.engine.beacon(q)
            if b is None:
                continue
            raw = b.encode()
            if len(out) >= MAX_CARRIED_BEACONS or size + len(raw) + 8 > MAX_BODY_SIZE:
                break
            out.append(raw)
            size += len(raw) + 8
        return out

    def _fresh_notice(self, r: int, due: int) -> AnchorNotice:
        """The notice every member with this view computes alike: anchor = its tip, open time = when the phase
        became due (the previous beacon's time + O; genesis time for round 1: always ≥ 1 s after the anchor's
        reveal, and never a time a miner chose). No clock in it, so leaders of different attempts propose the
        same bytes and co-signatures cannot split."""
        anchor = self.engine.tip()
        task_id, index, acts = self.tasks.schedule(anchor, r)
        return AnchorNotice(STATEMENT_VERSION, self.genesis.chain_id, r, anchor.hash, anchor.height,
                            due + self.window_ms, self.settlement(anchor, r), task_id, index, acts)

    def _notice_ok(self, notice: AnchorNotice, now_ms: int, due: int) -> str | None:
        try:
            self.check_notice(notice, now_ms, due)
        except RuleError as exc:
            return exc.message
        return None

    def missing_blocks(self, notice: AnchorNotice) -> tuple[bytes, ...]:
        """Hashes of blocks a proposed notice names that this member's engine lacks (at most MAX_FETCH): its
        anchor, if unknown, and the listed blocks of the rounds still judged by this member's own view that the
        notice settles as opened but this member never saw open."""
        e = self.engine
        out: list[bytes] = []
        if notice.anchor_hash != e.final_hash() and self.store.get_header(notice.anchor_hash) is None and not any(
                s.hash == notice.anchor_hash for s in e.candidates()):
            out.append(notice.anchor_hash)
        by_round: dict[int, set[bytes]] = {}
        for q, miner, _, opened in notice.settlement.records:
            if opened:
                by_round.setdefault(q, set()).add(miner)
        for q, miners in sorted(by_round.items()):
            beacon = e.beacon(q)
            if beacon is None or self.agreed_records(q) is not None:
                continue
            seen = e.openings(q)
            out += [h for h, miner, *_ in beacon.listed if miner in miners and h not in seen]
        return tuple(out[:MAX_FETCH])

    def check_notice(self, notice: AnchorNotice, now_ms: int, due: int) -> None:
        """Pass iff the notice is one this member may co-sign: its anchor is the final block (the round before
        was void) or a valid block of the previous round on it, its settlement is this member's for that
        anchor, and it opens exactly when the phase became due (never before the anchor's timestamp), which is
        not ahead of this member's clock. RuleError("bad-proposal") says why not."""
        e = self.engine
        final = e.final_header()
        anchor = final if notice.anchor_hash == final.hash else next(
            (s.block.header for s in e.candidates() if s.hash == notice.anchor_hash), None)
        if anchor is None or anchor.height != notice.anchor_height:
            raise RuleError("bad-proposal", f"anchor {notice.anchor_hash.hex()[:16]} is neither the final block "
                                            f"nor a valid block of the previous round")
        opened_ms = notice.entry_deadline_ms - self.window_ms
        if opened_ms != due:
            raise RuleError("bad-proposal", f"open time {opened_ms}, the round became due at {due}")
        if opened_ms > now_ms + CLOCK_SLACK_MS:
            raise RuleError("bad-proposal", f"open time {opened_ms} is ahead of this member's clock {now_ms}")
        if notice.settlement != self.settlement(anchor, notice.round):
            raise RuleError("bad-proposal", "settlement differs from this member's view of the openings")
        self.tasks.check_schedule(notice, anchor)

    # ------------------------------------------------------------ beacons

    def _beacon_phase(self, r: int, now_ms: int, due: int) -> list[Out]:
        out: list[Out] = []
        e = self.engine
        notice = e.notice(r)
        assert notice is not None
        # 1. assemble a beacon from t co-signatures on one content, with the t proven shares it came from
        best = self._best(r, Kind.SIGN_BEACON)
        if best is not None:
            sigs = self._quorum(r, Kind.SIGN_BEACON, best.sighash)
            shares, _ = self._released(r, self._released_draft(r, best))
            if len(sigs) >= self.t and len(shares) >= self.t:
                beacon = replace(best, signatures=tuple(sorted((m.signer, b.sig) for m, b in sigs)),
                                 release=self.shares.release(r, shares))
                return self._apply(e.add_beacon, beacon, "beacon")
        attempt = self.attempt(now_ms, due)
        mine = self.signed(b"b", r)
        # 2. t releases on the draft we signed → the key → co-sign the full beacon
        if mine is not None:
            draft = Beacon.decode(mine)
            out += self._sign_full(r, draft, attempt)
        # 3. the leader proposes
        if self._leader(r, attempt) and (r, Kind.PROPOSE_BEACON, attempt) not in self._did:
            self._did.add((r, Kind.PROPOSE_BEACON, attempt))
            content = Beacon.decode(mine) if mine else None
            held = {x.miner: x for x in self.entries(r)}
            if content is None:
                seen = self._best(r, Kind.RELEASE)
                if seen is not None and self._draft_ok(seen, self._entries_for(seen, r), now_ms, notice) is None:
                    content = seen
            content = content or self._fresh_draft(r, now_ms, notice)
            if content is not None:
                listed = [held.get(x[1]) or self._entries_for(content, r).get(x[1]) for x in content.listed]
                if all(x is not None for x in listed):
                    raw = pack([content.encode(), [x.encode() for x in listed if x is not None]])
                    out.append(self._msg(Kind.PROPOSE_BEACON, r, attempt, raw))
        # 4. co-sign (release a share for) a proposal, as for notices
        for a, (msg, body) in self._candidates(r, Kind.PROPOSE_BEACON, attempt):
            proposal = body.beacon
            assert proposal is not None
            if (r, Kind.RELEASE, a) in self._did:
                break
            try:
                share = self.shares.share_for(r)
            except RuleError as exc:   # e.g. the round's task message is not known here yet
                if msg.id not in self._judged:
                    self._judged.add(msg.id)
                    out.append(Refusal(r, "beacon", msg.signer, exc.code, f"no share to release: {exc.message}"))
                break
            if mine is None:
                problem = self._draft_ok(proposal, {x.miner: x for x in body.entries}, now_ms, notice)
                if problem is not None:
                    if msg.id not in self._judged:
                        self._judged.add(msg.id)
                        out.append(Refusal(r, "beacon", msg.signer, problem[0], problem[1]))
                        if problem[0] == "dropped-entry":
                            out.append(Evidence(r, msg.signer, "dropped-entry", msg.encode(), problem[2]))
                    continue
                if self._wait_for_cosigner(msg, Kind.RELEASE, draft_of(proposal).sighash):
                    continue
                self._journal(b"b", r, proposal.encode())
                mine = proposal.encode()
            self._did.add((r, Kind.RELEASE, a))
            out.append(self._msg(Kind.RELEASE, r, a, pack([mine, share])))
            if Beacon.decode(mine).sighash != proposal.sighash and msg.id not in self._judged:
                self._judged.add(msg.id)
                out.append(Refusal(r, "beacon", msg.signer, "bad-proposal",
                                   "differs from the beacon this member already signed"))
            out += self._sign_full(r, Beacon.decode(mine), a)
            break
        return out

    def _entries_for(self, draft: Beacon, r: int) -> dict[bytes, Entry]:
        """Entries (by miner) of round r carried by any proposal of that draft."""
        out: dict[bytes, Entry] = {}
        for _, body in self.proposals.get((r, Kind.PROPOSE_BEACON), {}).values():
            if body.beacon is not None and body.beacon.sighash == draft.sighash:
                out.update({x.miner: x for x in body.entries})
        return out

    def _released_draft(self, r: int, beacon: Beacon) -> Beacon:
        """The draft the RELEASEs behind ``beacon`` co-signed: its content with the key zero and the listing of
        every candidate (the beacon keeps the E largest stakes of them, §3.10), as pooled here."""
        for _, b in self.pool.get((r, Kind.RELEASE), {}).values():
            d = b.beacon
            if d is not None and draft_of(replace(beacon, listed=d.listed)).sighash == d.sighash:
                return d
        return draft_of(beacon)

    def _released(self, r: int, draft: Beacon) -> tuple[dict[int, bytes], list[Out]]:
        """The valid shares released for ``draft`` (member index → share), and evidence against every member
        whose released share fails its proof: its signed RELEASE is the proof anyone can check (§3.14)."""
        shares: dict[int, bytes] = {}
        out: list[Out] = []
        for m, b in self._quorum(r, Kind.RELEASE, draft.sighash):
            member = self.genesis.keyholders.index(m.signer)
            known = self._checked.get(m.id)
            if known is None:        # a proof costs ~4 scalar products: checked once per message
                try:
                    self.shares.check_share(member, r, b.share)
                    known = (r, True)
                except PopError as exc:
                    if getattr(exc, "code", "bad-key-share") != "bad-key-share":
                        continue     # the round's point is not known here yet: judge it later, blame nobody
                    known = (r, False)
                    out.append(Refusal(r, "share", m.signer, "bad-key-share", str(exc)))
                    out.append(Evidence(r, m.signer, "bad-share", m.encode(), b""))
                self._checked[m.id] = known
            if known[1]:
                shares[member] = b.share
        return shares, out

    def _sign_full(self, r: int, draft: Beacon, attempt: int) -> list[Out]:
        if (r, Kind.SIGN_BEACON, attempt) in self._did:
            return []
        shares, out = self._released(r, draft)
        if len(shares) < self.t:
            return out
        try:
            key = self.shares.combine(r, shares)
        except PopError:
            return out
        # the key is unique (t proven shares of one point): it is revealed whether or not its shard opens
        # (a sponsor that sealed a wrong key spoils only its own round), so nothing here can wedge the round
        self._did.add((r, Kind.SIGN_BEACON, attempt))
        # the listing: of the draft's candidates, the E largest stakes, ties by this key's slot values
        listed = select_listing([(x, self.engine.stake(x[1])) for x in draft.listed], key,
                                self.genesis.params.max_entries)
        full = replace(draft, listed=listed, shard_key=key, signatures=())
        return out + [self._msg(Kind.SIGN_BEACON, r, attempt, pack([full.encode(), self.keypair.sign(full.sighash)]))]

    def _fresh_draft(self, r: int, now_ms: int, notice: AnchorNotice) -> Beacon | None:
        held = self.entries(r)
        if not held:
            return None
        opened_ms = notice.entry_deadline_ms - self.window_ms
        listed = tuple(sorted(x.listing for x in held))      # every candidate: the key picks the E (§3.3)
        return Beacon(STATEMENT_VERSION, self.genesis.chain_id, r, notice.anchor_hash, opened_ms,
                      max(now_ms, opened_ms), listed, ZERO_KEY, notice.settlement, notice.task_id,
                      notice.shard_index, notice.activations)

    def _draft_ok(self, draft: Beacon, entries: Mapping[bytes, Entry], now_ms: int,
                  notice: AnchorNotice) -> tuple[str, str, bytes] | None:
        """None if acceptable, else (code, reason, the dropped entry's bytes or b"")."""
        try:
            self.check_draft(draft, entries, now_ms, notice)
        except RuleError as exc:
            dropped = self.dropped_entry(draft, entries) if exc.code == "dropped-entry" else None
            return exc.code, exc.message, dropped.encode() if dropped else b""
        return None

    def check_draft(self, draft: Beacon, entries: Mapping[bytes, Entry], now_ms: int, notice: AnchorNotice) -> None:
        """Pass iff this member may co-sign the draft: the round's anchor, open time and settlement, a sane
        reveal time, 1..MAX_CANDIDATES candidates that verify from their bytes (engine entry rule, bond cover),
        and no entry this member holds left out although it outranks a candidate by stake (or the draft had
        room). Else RuleError: "bad-proposal", or "dropped-entry" (evidence against the proposer)."""
        g = self.genesis
        opened_ms = notice.entry_deadline_ms - self.window_ms
        if draft.anchor_hash != notice.anchor_hash or draft.opened_ms != opened_ms:
            raise RuleError("bad-proposal", "anchor or open time differs from the round's notice")
        if (draft.settlement, draft.task_id, draft.shard_index, draft.activations) != (
                notice.settlement, notice.task_id, notice.shard_index, notice.activations):
            raise RuleError("bad-proposal", "settlement differs from the round's notice")
        if not notice.entry_deadline_ms <= draft.time_ms <= now_ms + CLOCK_SLACK_MS:
            raise RuleError("bad-proposal", f"reveal time {draft.time_ms} before the deadline or ahead of the clock")
        if not 1 <= len(draft.listed) <= MAX_CANDIDATES:
            raise RuleError("bad-proposal", f"{len(draft.listed)} candidates listed")
        owed = self.owed(draft.round)
        for item in draft.listed:
            miner = item[1]
            x = entries.get(miner)
            if x is None or x.listing != item:
                raise RuleError("bad-proposal", "a listed entry's bytes are missing")
            self.engine.check_entry(x)
            self.check_claim(x)
            if self.engine.stake(miner) < g.params.entry_bond * (1 + owed.get(miner, 0)):
                raise RuleError("bad-proposal", "a listed entry's stake does not cover its bonds")
        dropped = self.dropped_entry(draft, entries)
        if dropped is not None:
            raise RuleError("dropped-entry", f"leaves out entry {dropped.header_hash.hex()[:16]} of miner "
                                             f"{dropped.miner.hex()[:16]} that this member holds")

    def dropped_entry(self, draft: Beacon, entries: Mapping[bytes, Entry]) -> Entry | None:
        """An entry this member held ENTRY_GRACE_MS before the draft's reveal time that the candidates should
        have kept — the draft had room, or the entry's stake is larger than a candidate's — or None. One that
        reached this member just before the reveal may not have reached the leader yet (an honest race), and
        equal stakes at a full draft's floor are each holder's secret tie: neither is evidence."""
        listed = {x[1] for x in draft.listed}
        stakes = sorted(self.engine.stake(m) for m in listed)
        floor = stakes[0] if stakes and len(listed) >= MAX_CANDIDATES else None
        for x in self.entries(draft.round, before_ms=draft.time_ms - ENTRY_GRACE_MS):
            if x.miner not in listed and (floor is None or self.engine.stake(x.miner) > floor):
                return x
        return None
