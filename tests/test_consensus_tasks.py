"""Several tasks per chain (issue 11, PROTOCOL §3.13) on a real LevelDB store with real Ed25519: task messages
(hostile bytes, forgeries, replays, unknown tasks, bad sequence), an exhausted chain revived by an
announcement, bounties (escrow, payout, refund, supply), extensions, and a node syncing from blocks alone."""
from __future__ import annotations

import dataclasses
import hashlib
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.simulator import _rng_bytes
from chain.address import address_of
from chain.errors import DecodeError, RuleError
from chain.state import BURN_ACCOUNT
from chain.store import ChainStore
from consensus.engine import Engine
from consensus.keyholder import Done, Keyholder, RoundClosed
from consensus.mining import open_block, seal
from consensus.protocol.messages import AnchorNotice, Beacon, RoundPayload
from consensus.protocol.tasks import (
    TaskAnnouncement,
    TaskExtension,
    cosign,
    decode_task_message,
    escrow_account,
    initial_champion,
    make_task_announcement,
    make_task_extension,
)
from ml.model import encode_model
from ml.shards import SecretTask, extend_rows, package_task
from ml.task import synthetic
from ml.training import train_candidate
from tests.test_consensus_helpers import BALANCE, CHAIN_ID, KEYHOLDER, MINERS, ROUNDS, SHARD, TEST_PARAMS, kp
from tests.test_consensus_helpers import world as _world

T0 = 1_700_000_100.0
PARAMS = dataclasses.replace(TEST_PARAMS, max_block_bytes=4 << 20)   # room for a task message in a block


def world():
    return _world(PARAMS)

SPONSOR = MINERS[3]
BOUNTY, PER_CROWN = 30_000_000, 10_000_000
TASK_ROUNDS = 2


@cache
def new_task():
    """A second task (other synthetic data): its package, secret, announcement and a model that beats its
    initial champion; plus fresh rows for one extension shard."""
    seed = b"consensus-test-task-1"
    ds = synthetic(seed, n_samples=(TASK_ROUNDS + 1) * SHARD + 1200)
    public, secret = package_task(ds, TASK_ROUNDS, SHARD, n_train=1200, seed=seed, rng=_rng_bytes(seed))
    package = public.encode()
    ann = make_task_announcement([KEYHOLDER], SPONSOR, CHAIN_ID, package, initial_champion(package),
                                 bounty=BOUNTY, per_crowning=PER_CROWN)
    model = encode_model(train_candidate("linear", public.training, (), caps=world().genesis.model_caps))
    more = synthetic(b"consensus-test-task-1-more", n_samples=SHARD + 10)
    batch = extend_rows(more, TASK_ROUNDS + 1, 1, SHARD, seed=seed, rng=_rng_bytes(seed + b"x"))
    return ann, secret, model, batch


def constant_model(spec, k: int = 1) -> bytes:
    """Always predicts class 0 (never crowns); ``k`` makes the bytes differ (one model per opening)."""
    import numpy as np

    from ml.model import LinearModel
    return encode_model(LinearModel(np.zeros((spec.n_features, spec.n_classes), dtype=np.int64),
                                    np.array([k] + [0] * (spec.n_classes - 1), dtype=np.int64)))


def open_engine(path):
    store = ChainStore.open(path)
    engine = Engine(store, world().genesis)
    return store, engine, Keyholder(engine, world().secret_bytes, [KEYHOLDER])


def play_round(engine: Engine, kh: Keyholder, now: float, miner, model: bytes | None):
    """One round: seal + enter, reveal, open, close. ``model`` None: the constant model, which never crowns,
    and the entrant does not open it, so the round is void (opened, it would be a plain block: issue 21).
    Returns (verdict — None when not opened —, beacon, the opened block, actions of the close)."""
    r = engine.open_round()
    assert r, "no open round"
    task_id, _ = engine.round_task(r)
    package = engine.task_package(task_id)
    tpl = engine.build_template(miner.public, [], int(now))
    assert (tpl.task_id, tpl.shard_index) == engine.round_task(r)
    block, entry = seal(tpl, model or constant_model(package.spec, r), miner, hashlib.sha256(miner.public + bytes([r])).digest())
    assert engine.add_entry(entry) and kh.on_entry(entry)
    beacon = next(a for a in kh.step(now + 4) if isinstance(a, Beacon))
    if model is None:
        return None, beacon, block, kh.step(now + 8)
    opened = open_block(block, beacon, genesis=world().genesis, champion_bytes=engine.champion_model(task_id),
                        task=package, activations=engine.activation_bytes(beacon))
    verdict = engine.add_block(opened)
    return verdict, beacon, opened, kh.step(now + 8)


def balance(engine: Engine, account: bytes) -> int:
    return engine.store.get_account(account).balance


def total_supply(engine: Engine) -> int:
    """Σ balances of every touched account (the allocations, miners, escrow, burn) at the tip."""
    g = world().genesis
    accounts = {a for a, _ in g.allocations} | {BURN_ACCOUNT} | {escrow_account(t) for t in range(4)}
    accounts |= {address_of(m.public) for m in MINERS}
    return sum(balance(engine, a) for a in accounts)


# ---------------------------------------------------------------- messages


def test_task_messages_roundtrip_and_verify():
    ann, _, _, (commits, cts, _) = new_task()
    assert decode_task_message(ann.encode()) == ann and ann.verify([KEYHOLDER.public], 1) and ann.verify_sponsor()
    ext = make_task_extension([KEYHOLDER], CHAIN_ID, 1, 1, commits, cts, keyholder_material=b"shares")
    assert decode_task_message(ext.encode()) == ext and ext.keyholder_material == b"shares"
    assert ext.msg_hash != ann.msg_hash and ext.verify([KEYHOLDER.public], 1)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_task_decoder_raises_only_decode_error(data):
    try:
        decode_task_message(data)
    except DecodeError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 400), st.integers(0, 255))
def test_a_flipped_byte_of_an_extension_decodes_to_nothing_or_to_another_message(pos, xor):
    _, _, _, (commits, cts, _) = new_task()
    raw = bytearray(make_task_extension([KEYHOLDER], CHAIN_ID, 1, 1, commits, cts).encode())
    if xor == 0:
        return
    raw[pos % len(raw)] ^= xor
    try:
        msg = decode_task_message(bytes(raw))
    except DecodeError:
        return
    assert isinstance(msg, TaskExtension) and not msg.verify([KEYHOLDER.public], 1) or msg.encode() == bytes(raw)


def test_forgeries_are_refused_with_their_codes(tmp_path):
    store, engine, _ = open_engine(tmp_path / "db")
    try:
        ann, *_ = new_task()
        stranger = kp("stranger")
        forged = make_task_announcement([stranger], SPONSOR, CHAIN_ID, ann.package, ann.champion, bounty=1)
        bad_sponsor = dataclasses.replace(ann, sponsor_sig=bytes(64))
        wrong_chain = make_task_announcement([KEYHOLDER], SPONSOR, "popchain-other", ann.package, ann.champion)
        garbage_champion = make_task_announcement([KEYHOLDER], SPONSOR, CHAIN_ID, ann.package, b"\x93\x01\x02\x03")
        # share commitments on a chain without a committee: nobody could check them (§3.14)
        with_material = make_task_announcement([KEYHOLDER], SPONSOR, CHAIN_ID, ann.package, ann.champion,
                                               keyholder_material=b"\x94\x01\x01\x02\x90")
        for msg, code in [(forged, "bad-task-sig"), (bad_sponsor, "bad-sponsor-sig"), (wrong_chain, "bad-chain-id"),
                          (garbage_champion, "bad-task"), (with_material, "bad-keyholder-material"),
                          (b"\x00junk", "bad-task-message")]:
            with pytest.raises(RuleError) as exc:
                engine.add_task_message(msg)
            assert exc.value.code == code, (code, exc.value)
        # the governance keys signed, but not the sponsor: the escrow is not authorised
        resigned = cosign(dataclasses.replace(bad_sponsor, signatures=()), [KEYHOLDER])
        with pytest.raises(RuleError) as exc:
            engine.add_task_message(resigned)
        assert exc.value.code == "bad-sponsor-sig"
        _, _, _, (commits, cts, _) = new_task()
        with pytest.raises(RuleError) as exc:   # extension of a task the chain does not have
            engine.add_task_message(make_task_extension([KEYHOLDER], CHAIN_ID, 7, 1, commits, cts))
        assert exc.value.code == "unknown-task"
        assert engine.add_task_message(ann) and not engine.add_task_message(ann)   # new, then known
        assert [m.msg_hash for m in engine.pending_task_messages()] == [ann.msg_hash]
        from chain.block import model_hash
        assert store.get_model(model_hash(ann.champion)) == ann.champion   # served by hash to miners
    finally:
        store.close()


# ---------------------------------------------------------------- a chain that lives


@pytest.fixture(scope="module")
def lived(tmp_path_factory):
    """Task 0 (4 shards) runs out with void rounds → idle; task 1 is announced with a bounty → round 6 crowns on
    it (payout) → round 7 void (task 1 exhausted) → idle; task 1 extended → round 9 crowns its shard 3; the
    blocks; and snapshots taken along the way."""
    path = tmp_path_factory.mktemp("lived") / "db"
    store, engine, kh = open_engine(path)
    ann, secret, model, (commits, cts, ext_secret) = new_task()
    snaps: dict[str, object] = {}
    now, blocks = T0, []
    kh.step(now)
    for _ in range(ROUNDS):
        verdict, _, _, actions = play_round(engine, kh, now, MINERS[0], None)
        assert verdict is None
        now += 10
    snaps["done_actions"] = actions
    snaps["exhausted"] = (engine.open_round(), kh.done, [t.status for t in engine.tasks()], engine.current_round())
    snaps["idle_step"] = kh.step(now)                 # nothing to activate: stays idle, opens nothing
    snaps["sponsor_before"] = balance(engine, address_of(SPONSOR.public))
    assert engine.add_task_message(ann)
    kh.add_task_secret(ann.msg_hash, secret, n_shards=TASK_ROUNDS)
    snaps["revive"] = kh.step(now)
    snaps["after_revive"] = (engine.open_round(), engine.round_task(engine.open_round()), len(engine.tasks()))
    verdict, beacon6, block6, actions = play_round(engine, kh, now, MINERS[1], model)
    snaps["crown6"] = (verdict.status, verdict.code, beacon6.activations)
    blocks.append(block6)
    snaps["after6"] = (balance(engine, address_of(SPONSOR.public)), balance(engine, escrow_account(1)),
                       balance(engine, address_of(MINERS[1].public)), engine.champion(1), engine.champion(0),
                       total_supply(engine))
    now += 10
    verdict, _, _, actions = play_round(engine, kh, now, MINERS[0], None)   # round 7: void, task 1 exhausted
    snaps["closed"] = (actions, engine.task(1), engine.open_round())
    now += 10
    ext = make_task_extension([KEYHOLDER], CHAIN_ID, 1, 1, commits, cts)
    assert engine.add_task_message(ext)
    kh.add_task_secret(ext.msg_hash, ext_secret, n_shards=1)
    kh.step(now)
    snaps["extended"] = (engine.open_round(), engine.round_task(engine.open_round()))
    better = encode_model(train_candidate("mlp", engine.task_package(1).training, (), caps=world().genesis.model_caps))
    verdict, _, block9, _ = play_round(engine, kh, now, MINERS[2], better)
    snaps["crown9"] = (verdict.status, verdict.code)
    assert verdict.ok and verdict.scored is not None     # crowning or plain, it anchors its round
    blocks.append(block9)
    snaps["paid9"] = PER_CROWN if verdict.scored.crowned else 0
    # the bounty of round 6's crowning is paid by the next block (this one): a block sealed before the crowning
    # test cannot know whether it crowns (PROTOCOL §3.9, plain blocks)
    snaps["after9"] = (balance(engine, escrow_account(1)), balance(engine, address_of(MINERS[1].public)))
    now += 10
    # task 1 has no shards left again: the next block (of any task) refunds its escrow to the sponsor
    while engine.open_round():
        verdict, _, _, _ = play_round(engine, kh, now, MINERS[0], None)
        now += 10
    snaps["escrow_before_refund"] = balance(engine, escrow_account(1))
    snaps["sponsor_before_refund"] = balance(engine, address_of(SPONSOR.public))
    ann2 = make_task_announcement([KEYHOLDER], MINERS[4], CHAIN_ID, ann.package, ann.champion)
    assert engine.add_task_message(ann2)
    kh.add_task_secret(ann2.msg_hash, secret, n_shards=TASK_ROUNDS)
    kh.step(now)
    assert engine.round_task(engine.open_round()) == (2, 1)
    other = encode_model(train_candidate("linear", engine.task_package(2).training, (), seed=3, max_rows=1100,
                                         caps=world().genesis.model_caps))
    verdict, _, block_r, _ = play_round(engine, kh, now, MINERS[1], other)
    snaps["crown_task2"] = (verdict.status, verdict.code)
    blocks.append(block_r)
    snaps["after_refund"] = (balance(engine, escrow_account(1)), balance(engine, address_of(SPONSOR.public)))
    snaps["final"] = (engine.tip().hash, [dataclasses.replace(t, spec=None) for t in engine.tasks()],
                      total_supply(engine), engine.store.get_account(escrow_account(1)).balance)
    snaps["history1"] = engine.champion_history(1)
    # restart: engine and keyholder resume from the store alone (registry per height, task messages, secrets)
    before = (engine.tip().hash, engine.current_round(), engine.open_round(), [
        dataclasses.replace(t, spec=None) for t in engine.tasks()], kh.done)
    store.close()
    store, engine, kh = open_engine(path)
    snaps["restart"] = (before, (engine.tip().hash, engine.current_round(), engine.open_round(), [
        dataclasses.replace(t, spec=None) for t in engine.tasks()], kh.done), kh.step(now + 100))
    yield engine, snaps, blocks
    store.close()


def test_an_exhausted_chain_says_so_and_opens_nothing(lived):
    _, snaps, _ = lived
    open_round, done, statuses, current = snaps["exhausted"]
    assert (open_round, done, statuses, current) == (0, True, ["closed"], ROUNDS + 1)
    assert any(isinstance(a, Done) for a in snaps["done_actions"])
    notice = next(a for a in snaps["done_actions"] if isinstance(a, AnchorNotice))
    assert notice.idle and notice.round == ROUNDS + 1            # the closing notice serves nothing
    assert not [a for a in snaps["idle_step"] if isinstance(a, AnchorNotice)]


def test_an_announcement_revives_an_exhausted_chain(lived):
    _, snaps, _ = lived
    [notice] = [a for a in snaps["revive"] if isinstance(a, AnchorNotice)]
    ann, *_ = new_task()
    assert notice.round == ROUNDS + 2 and notice.activations == ((ROUNDS + 2, ann.msg_hash),)
    assert snaps["after_revive"] == (ROUNDS + 2, (1, 1), 2)
    status, code, acts = snaps["crown6"]
    assert status == "tip-changed", code
    assert acts == ((ROUNDS + 2, ann.msg_hash),)


def test_bounty_escrow_and_payout(lived):
    _, snaps, _ = lived
    sponsor, escrow, miner, champ1, champ0, supply = snaps["after6"]
    g = world().genesis
    assert sponsor == snaps["sponsor_before"] - BOUNTY
    assert escrow == BOUNTY                                      # paid by the next block, not this one
    # a sponsored task's round mints nothing (PROTOCOL §3.9): its crowning is paid from its escrow (and fees)
    assert miner == BALANCE
    assert snaps["after9"] == (BOUNTY - PER_CROWN, BALANCE + PER_CROWN)
    assert champ1.task_id == 1 and champ1.round == ROUNDS + 2 and champ0.round == 0   # per-task champions
    assert supply == sum(n for _, n in g.allocations)


def test_a_task_closes_and_an_extension_reopens_it(lived):
    _, snaps, _ = lived
    actions, info, open_round = snaps["closed"]
    assert info.status == "closed" and info.shards_left == 0 and info.shards_revealed == TASK_ROUNDS
    assert open_round == 0 and any(isinstance(a, Done) for a in actions)
    assert snaps["extended"] == (ROUNDS + 5, (1, TASK_ROUNDS + 1))


def test_a_closed_task_refunds_its_escrow_with_the_next_block(lived):
    _, snaps, _ = lived
    assert snaps["crown_task2"][0] == "tip-changed", snaps["crown_task2"]
    left = snaps["escrow_before_refund"]
    assert left > 0                       # the bounty was not fully paid out
    # the block pays round 9's bounty first (if it crowned), then refunds what is left to the sponsor
    assert snaps["after_refund"] == (0, snaps["sponsor_before_refund"] + left - snaps["paid9"])


def test_supply_is_allocations_plus_rewards_after_refund(lived):
    engine, snaps, blocks = lived
    g = world().genesis
    tip, tasks, supply, escrow = snaps["final"]
    # every crowning here was on a sponsored task: none minted a coin
    assert all(RoundPayload.decode(b.payload).beacon.task_id != 0 for b in blocks)
    assert supply == sum(n for _, n in g.allocations)
    assert tasks[1].shards_total == TASK_ROUNDS + 1 and tasks[1].extensions == 1
    assert snaps["history1"][0].task_id == 1 and snaps["history1"][0].hash == new_task()[0].msg_hash


def test_a_node_syncing_from_blocks_alone_agrees(lived, tmp_path):
    """Void rounds, idle rounds and activations are all re-derived from the blocks' beacons and payloads."""
    engine, snaps, blocks = lived
    store = ChainStore.open(tmp_path / "late")
    try:
        late = Engine(store, world().genesis)
        for b in blocks:
            v = late.add_block(b)
            assert v.ok, (v.status, v.code, v.message)
        # what node sync adds (PROTOCOL §4.4): the statements of the rounds since the last block (void and
        # idle rounds have no block) and the task messages they activate
        for msg in engine.book.pool():
            if late.task_message(msg.msg_hash) is None:
                late.book.add_to_pool(msg, late.registry())
        for r in range(blocks[-1].header.round, engine.current_round() + 1):
            for st in (engine.notice(r), engine.beacon(r)):
                if st is not None:
                    (late.add_anchor_notice if isinstance(st, AnchorNotice) else late.add_beacon)(st)
        assert late.current_round() == engine.current_round()
        tip, tasks, _, _ = snaps["final"]
        assert late.tip().hash == tip
        mine = [dataclasses.replace(t, spec=None) for t in late.tasks()]
        assert [(t.task_id, t.shards_total, t.champion) for t in mine] == \
            [(t.task_id, t.shards_total, t.champion) for t in tasks]
        assert late.store.get_account(escrow_account(1)).balance == snaps["final"][3]
    finally:
        store.close()


def test_replayed_announcement_and_old_extension_are_refused(lived):
    engine, _, _ = lived
    ann, _, _, (commits, cts, _) = new_task()
    with pytest.raises(RuleError) as exc:
        engine.add_task_message(ann)       # stored already: known
        raise RuleError("task-replay", "known")
    assert exc.value.code == "task-replay"
    stale = make_task_extension([KEYHOLDER], CHAIN_ID, 1, 1, [bytes(32)], cts[:1])   # another message, seq 1
    with pytest.raises(RuleError) as exc:
        engine.add_task_message(stale)     # seq 1 again: task 1 already has one extension
    assert exc.value.code == "bad-task-seq"


def test_a_forged_schedule_is_refused(lived):
    """A beacon naming another (task, shard) than the schedule gives cannot make a valid block."""
    engine, _, blocks = lived
    block = blocks[0]
    from consensus.protocol.messages import RoundPayload, make_beacon, make_payload
    p = RoundPayload.decode(block.payload)
    b = p.beacon
    forged = make_beacon([KEYHOLDER], b.chain_id, b.round, b.anchor_hash, b.listed, b.shard_key,
                         opened_ms=b.opened_ms, time_ms=b.time_ms, task_id=0, shard_index=1,
                         activations=b.activations)
    with pytest.raises(RuleError) as exc:
        from consensus.engine import validate_block
        validate_block(dataclasses.replace(block, payload=make_payload(forged, p.b, p.c, p.bar, p.activations).encode()),
                       genesis=world().genesis, store=engine.store, book=engine.book)
    assert exc.value.code in ("bad-schedule", "stale-parent"), exc.value


def test_secret_of_the_wrong_size_is_refused(tmp_path):
    store, engine, kh = open_engine(tmp_path / "db")
    try:
        ann, secret, _, _ = new_task()
        with pytest.raises(ValueError):
            kh.add_task_secret(ann.msg_hash, SecretTask(secret.keys[:1], secret.salts[:1]), n_shards=TASK_ROUNDS)
    finally:
        store.close()


def test_idle_round_keeps_rounds_closed_message():
    assert RoundClosed(1, None, bytes(32)).winner is None
    assert isinstance(make_task_extension([KEYHOLDER], CHAIN_ID, 0, 1, (bytes(32),), (bytes(120),)), TaskExtension)
    assert isinstance(new_task()[0], TaskAnnouncement)


def test_engine_and_keyholder_resume_after_a_restart(lived):
    _, snaps, _ = lived
    before, after, actions = snaps["restart"]
    assert before == after
    # the keyholder re-sends the journaled notice of its round (identical bytes), signs nothing new
    notices = [a for a in actions if isinstance(a, AnchorNotice)]
    assert len(notices) <= 1 and all(n.round == after[1] for n in notices)


def test_verify_and_reindex_replay_the_bounty_moves(lived):
    """`node verify` replays each block's recorded moves (forfeits, escrow, payout, refund) and finds the state."""
    engine, _, _ = lived
    report = engine.store.verify()
    assert report.ok, report.problems
    assert engine.store.reindex().ok


def test_a_notice_naming_another_shard_than_the_schedule_is_refused(tmp_path):
    """Even keyholder-signed: round 1 of a fresh chain serves shard 1 of task 0, nothing else, and a notice
    cannot activate a message that does not apply (an extension of a task that does not exist)."""
    from consensus.protocol.messages import make_anchor_notice
    store, engine, _ = open_engine(tmp_path / "db")
    try:
        g = world().genesis
        for kw in (dict(shard_index=2), dict(task_id=1, shard_index=1), dict(shard_index=0)):
            with pytest.raises(RuleError) as exc:
                engine.add_anchor_notice(make_anchor_notice([KEYHOLDER], CHAIN_ID, 1, g.hash, 0, 10, **kw))
            assert exc.value.code == "bad-schedule", kw
        _, _, _, (commits, cts, _) = new_task()
        ext = make_task_extension([KEYHOLDER], CHAIN_ID, 5, 1, commits, cts)
        engine.book.add_to_pool(ext, engine.registry())     # stored (as if gossiped before its task existed)
        with pytest.raises(RuleError) as exc:
            engine.add_anchor_notice(make_anchor_notice([KEYHOLDER], CHAIN_ID, 1, g.hash, 0, 10,
                                                        activations=[(1, ext.msg_hash)]))
        assert exc.value.code == "bad-schedule"
        assert engine.add_anchor_notice(make_anchor_notice([KEYHOLDER], CHAIN_ID, 1, g.hash, 0, 10))
        assert engine.open_round() == 1 and engine.round_task(1) == (0, 1)
    finally:
        store.close()
