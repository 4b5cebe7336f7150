"""One test per reject code of PROTOCOL §3.6: an otherwise-valid block that breaks exactly that rule."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from chain.address import address_of
from chain.block import Block, model_hash
from chain.errors import RuleError
from consensus.engine import OrphanBlock, validate_block
from consensus.protocol.messages import make_settlement
from consensus.protocol.rules import decode_block
from ml.model import LinearModel, encode_model
from tests.test_consensus_helpers import (
    KEYHOLDER,
    MINERS,
    POOR,
    ROUNDS,
    kp,
    make_block,
    new_store,
    trained,
    transfer,
    world,
)


@pytest.fixture()
def store(tmp_path):
    s = new_store(tmp_path)
    yield s
    s.close()


def check(store, block, code: str) -> None:
    with pytest.raises(RuleError) as exc:
        validate_block(block, genesis=world().genesis, store=store)
    assert exc.value.code == code, exc.value


def test_baseline_block_is_valid(store):
    block, _ = make_block(store, txs=(transfer(MINERS[1]),))
    scored = validate_block(block, genesis=world().genesis, store=store)
    assert scored.b >= scored.bar > scored.c and scored.bar > 0


def test_block_too_large(store):
    big = b"\x00" * (world().genesis.params.max_block_bytes + 1)
    block, _ = make_block(store, model=big)
    check(store, block, "block-too-large")
    with pytest.raises(RuleError) as exc:
        decode_block(block.encode(), world().genesis.params)
    assert exc.value.code == "block-too-large"


def test_bad_encoding():
    with pytest.raises(RuleError) as exc:
        decode_block(b"\x94\x01\x02\x03", world().genesis.params)
    assert exc.value.code == "bad-encoding"


def test_bad_chain_id(store):
    check(store, make_block(store, header={"chain_id": "other-chain"})[0], "bad-chain-id")


def test_bad_version(store):
    check(store, make_block(store, header={"version": 2})[0], "bad-version")


def test_bad_payload(store):
    check(store, make_block(store, raw_payload=b"\x93\x01\x02\x03")[0], "bad-payload")


def test_bad_beacon_round(store):
    check(store, make_block(store, beacon={"round": 2})[0], "bad-beacon")


def test_bad_beacon_sig(store):
    check(store, make_block(store, beacon_signers=(kp("impostor"),))[0], "bad-beacon-sig")


def test_not_entered(store):
    check(store, make_block(store, entered=False, extra_entries=((b"\x01" * 32, MINERS[3].public),))[0], "not-entered")


def test_bad_anchor(store):
    check(store, make_block(store, beacon={"anchor_hash": b"\x02" * 32})[0], "bad-anchor")


def test_orphan_is_not_invalid(store):
    other = b"\x03" * 32
    block, _ = make_block(store, header={"prev_hash": other}, beacon={"anchor_hash": other})
    with pytest.raises(OrphanBlock) as exc:
        validate_block(block, genesis=world().genesis, store=store)
    assert exc.value.parent_hash == other


def test_bad_height(store):
    check(store, make_block(store, header={"height": 2})[0], "bad-height")


def test_bad_round(store):
    """A block's round must come after its parent's: a second round-1 block on a round-1 block is refused."""
    g = world().genesis
    first, _ = make_block(store)
    store.connect_block(first, g.ledger_params)
    check(store, make_block(store, round=1, parent=first.header)[0], "bad-round")


def test_bad_activation(store):
    """A beacon that activates a task message, in a payload whose bytes are not that message."""
    from consensus.protocol.messages import make_beacon, make_payload
    block, bc = make_block(store)
    h = bytes(range(32))
    forged = make_beacon([KEYHOLDER], bc.chain_id, bc.round, bc.anchor_hash, bc.listed, bc.shard_key,
                         opened_ms=bc.opened_ms, time_ms=bc.time_ms, activations=[(1, h)])
    for junk in (b"\x00junk", b"\x91\x01"):
        bad = dataclasses.replace(block, payload=make_payload(forged, 0, 0, 0, [junk]).encode())
        check(store, bad, "bad-activation")


def test_round_beyond_every_task_is_a_bad_schedule(store):
    """Round n+1 of a chain whose only task has n shards is idle (§3.13): no block can serve it."""
    check(store, make_block(store, round=ROUNDS + 1)[0], "bad-schedule")


def test_bad_timestamp(store):
    check(store, make_block(store, header={"timestamp": world().genesis.timestamp})[0], "bad-timestamp")


def test_timestamp_at_the_decode_cap_is_refused(store):
    """Old rule: only `> parent` — a block stamped 2^40 was valid and no child could ever follow it."""
    check(store, make_block(store, header={"timestamp": 2**40})[0], "bad-timestamp")
    slack = world().genesis.params.time_slack_s
    t = world().genesis.timestamp + 10   # the helper's beacon times (seconds)
    check(store, make_block(store, header={"timestamp": t + slack + 1})[0], "bad-timestamp")
    validate_block(make_block(store, header={"timestamp": t + slack})[0], genesis=world().genesis, store=store)


def test_a_beacon_time_before_its_anchor_only_narrows_the_timestamp_window(store):
    """Until issue 18 a beacon before the anchor's timestamp was bad-beacon (the keyholder opened no earlier than
    the anchor's timestamp: a miner's timestamp could stall the next round). Now only the window decides: it
    stays [parent + 1, reveal + slack], empty only if the reveal is over ``slack`` before the parent's stamp."""
    g = world().genesis
    t = (g.timestamp - 1) * 1000
    block = make_block(store, beacon={"opened_ms": t - 5000, "time_ms": t})[0]
    validate_block(block, genesis=g, store=store)              # parent + 10 ≤ reveal + slack: valid
    far = (g.timestamp - g.params.time_slack_s - 1) * 1000
    check(store, make_block(store, beacon={"opened_ms": far, "time_ms": far})[0], "bad-timestamp")


def test_listed_hash_with_another_miner_is_not_entered(store):
    block, _ = make_block(store)
    check(store, make_block(store, entered=False,
                            extra_entries=((block.header.hash, MINERS[2].public),))[0], "not-entered")


def test_bad_header_sig(store):
    check(store, make_block(store, sign_with=MINERS[1])[0], "bad-header-sig")


def test_insufficient_stake(store):
    check(store, make_block(store, miner=POOR)[0], "insufficient-stake")


def test_too_many_txs(store):
    txs = tuple(transfer(MINERS[1], n) for n in range(world().genesis.params.max_block_txs + 1))
    check(store, _swap_txs(store, txs[:-1], txs), "too-many-txs")


def test_bad_tx_root(store):
    check(store, make_block(store, txs=(transfer(MINERS[1]),), header={"tx_root": b"\x04" * 32})[0],
          "bad-tx-root")


def test_bad_tx_sig(store):
    good = transfer(MINERS[1])
    check(store, _swap_txs(store, (good,), (dataclasses.replace(good, signature=bytes(64)),)), "bad-tx-sig")


def _swap_txs(store, honest, bad):
    from chain.block import tx_root
    block, _ = make_block(store, txs=honest, header={"tx_root": tx_root(bad)})
    return Block(block.header, bad, block.model, block.payload)


def test_bad_nonce(store):
    check(store, _swap_txs(store, (transfer(MINERS[1], 0),), (transfer(MINERS[1], 5),)), "bad-nonce")


def test_insufficient_funds(store):
    check(store, _swap_txs(store, (transfer(MINERS[1], 0),), (transfer(MINERS[1], 0, amount=10**10),)),
          "insufficient-funds")


def test_fee_too_low(store):
    check(store, _swap_txs(store, (transfer(MINERS[1], 0),), (transfer(MINERS[1], 0, fee=999),)), "fee-too-low")


def test_bad_amount(store):
    check(store, _swap_txs(store, (transfer(MINERS[1], 0),), (transfer(MINERS[1], 0, amount=0),)), "bad-amount")


def test_tx_for_another_chain(store):
    from chain.tx import make_transfer
    foreign = make_transfer(MINERS[1], "other-chain", address_of(MINERS[2].public), 5, 1_000, 0)
    check(store, _swap_txs(store, (transfer(MINERS[1], 0),), (foreign,)), "bad-chain-id")


def test_bad_state_root(store):
    check(store, make_block(store, header={"state_root": b"\x05" * 32})[0], "bad-state-root")


def test_bad_model_hash(store):
    check(store, make_block(store, header={"model_hash": model_hash(b"something else")})[0], "bad-model-hash")


def test_model_too_large(store):
    big = b"\x00" * (world().genesis.params.model_max_bytes + 1)
    check(store, make_block(store, model=big)[0], "model-too-large")


def test_bad_model(store):
    check(store, make_block(store, model=b"\x92\x01\xa5weird")[0], "bad-model")


def test_duplicate_model(store):
    check(store, make_block(store, model=world().genesis.block.model)[0], "duplicate-model")


def test_a_model_opened_earlier_cannot_be_crowned(store):
    """Old rule: only champions were duplicates, so a loser opened in round r could be re-entered by anyone
    in a later round. The beacon's settlement lists every model opened since its anchor."""
    model = trained("mlp")
    validate_block(make_block(store, model=model)[0], genesis=world().genesis, store=store)
    opened = make_settlement(1, 1, [(1, MINERS[2].public, model_hash(model), 1)])
    check(store, make_block(store, model=model, round=2, beacon={"settlement": opened})[0], "duplicate-model")


def test_a_model_listed_first_by_another_key_cannot_be_crowned(store):
    """Issue 18: a model first listed by another key — even in a void round whose opening nobody recorded —
    belongs to that key. The settlement's records carry void rounds' listings, so every node knows it."""
    model = trained("mlp")
    unopened = make_settlement(1, 1, [(1, MINERS[2].public, model_hash(model), 0)])
    check(store, make_block(store, model=model, round=2, beacon={"settlement": unopened})[0], "duplicate-model")
    mine = make_settlement(1, 1, [(1, MINERS[0].public, model_hash(model), 0)])   # its own earlier listing
    validate_block(make_block(store, model=model, round=2, beacon={"settlement": mine})[0],
                   genesis=world().genesis, store=store)


def test_forfeits_are_charged_before_the_txs(store):
    """A forfeited bond is burnt before the block's txs: a state root that ignores it is bad."""
    from chain.state import BURN_ACCOUNT
    from consensus.protocol.settlement import bond_of, settlement_moves
    g = world().genesis
    settled = make_settlement(1, 2, [(1, MINERS[1].public, b"\x01" * 32, 0), (2, MINERS[1].public, b"\x02" * 32, 0)])
    block, _ = make_block(store, round=3, beacon={"settlement": settled})
    scored = validate_block(block, genesis=g, store=store)
    assert scored.moves == settlement_moves(bond=g.params.entry_bond, settlement=settled)
    assert scored.moves == ((bond_of(MINERS[1].public), BURN_ACCOUNT, 2 * g.params.entry_bond),)
    honest_root = make_block(store, round=3)[0].header.state_root
    check(store, make_block(store, round=3, beacon={"settlement": settled}, header={"state_root": honest_root})[0],
          "bad-state-root")


def test_bad_shard_commitment(store):
    check(store, make_block(store, beacon={"shard_key": b"\x06" * 32})[0], "bad-shard-commitment")


def test_bad_bar_is_a_bad_score(store):
    from consensus.protocol.messages import RoundPayload
    p = RoundPayload.decode(make_block(store)[0].payload)
    check(store, make_block(store, payload={"bar": p.bar - 1})[0], "bad-score")


def test_bad_score(store):
    block, _ = make_block(store)
    from consensus.protocol.messages import RoundPayload
    p = RoundPayload.decode(block.payload)
    check(store, make_block(store, payload={"b": p.b + 1})[0], "bad-score")


def test_not_better_than_champion(store):
    spec = world().genesis.task.spec
    constant = LinearModel(np.zeros((spec.n_features, spec.n_classes), dtype=np.int64),
                           np.array([1] + [0] * (spec.n_classes - 1), dtype=np.int64))
    # issue 21: valid except for the crowning test is a PLAIN block (no reject code: it confirms its txs and
    # leaves the champion); the code not-better-than-champion is retired
    from chain.rejects import CONSENSUS_CODES
    scored = validate_block(make_block(store, model=encode_model(constant))[0], genesis=world().genesis, store=store)
    assert not scored.crowned and "not-better" + "-than-champion" not in CONSENSUS_CODES


def test_every_protocol_code_is_tested():
    """Keeps this file and PROTOCOL §3.6 in step: each code listed there has a test here."""
    import pathlib
    import re
    doc = (pathlib.Path(__file__).parents[1] / "docs" / "PROTOCOL.md").read_text()
    section = doc.split("### 3.6")[1].split("### 3.7")[0]
    codes = set(re.findall(r"`([a-z]+(?:-[a-z]+)+)`", section))
    here = pathlib.Path(__file__).read_text()
    missing = {c for c in codes if f'"{c}"' not in here}
    assert not missing, f"reject codes without a test: {sorted(missing)}"


def test_bad_settlement_is_refused_by_the_ledger(store):
    """A beacon cannot express a malformed move (its decoder checks them), so this is the ledger's own guard:
    a negative or mis-sized move never applies."""
    g = world().genesis
    tip = store.tip()
    for move in [(address_of(MINERS[1].public), bytes(20), -1), (b"short", bytes(20), 1)]:
        with pytest.raises(RuleError) as exc:
            store.preview_txs(tip.hash, MINERS[0].public, (), g.ledger_params, (move,))
        assert exc.value.code == "bad-settlement"


# ---------------------------------------------------------------- a committee chain's block (PROTOCOL §3.14)


@pytest.fixture(scope="module")
def committee(tmp_path_factory):
    """A 2-of-3 DKG committee chain whose genesis task carries data sealed to the committee (its sponsor: the
    seeded "sponsor" key, funded), on a real store."""
    from chain.store import ChainStore
    from consensus.engine import Engine
    from consensus.keyholder import load_member_file
    from node.tools.testing import make_test_chain
    root = tmp_path_factory.mktemp("committee-rejects")
    chain = make_test_chain(root / "chain", rounds=3, shard_size=60, n_train=300, keyholders=3, threshold=2)
    store = ChainStore.open(root / "db")
    Engine(store, chain.genesis)             # initialises genesis in the store
    secrets = sorted((load_member_file(p.read_bytes()) for p in chain.member_paths), key=lambda s: s.member)
    yield chain, store, secrets
    store.close()


def committee_block(committee, miner, *, corrupt: int | None = None) -> Block:
    """Round 1's block by ``miner`` with the beacon two members sign and release for; ``corrupt``: that member's
    released share carries a broken proof."""
    from consensus.engine import TaskBook
    from consensus.mining import build_template, open_block, seal
    from consensus.protocol.messages import make_beacon, possession
    from consensus.protocol.registry import minted_reward
    from consensus.protocol.release import Release, combine, make_partial, unseal
    from node.tools.testing import seeded_keypair
    chain, store, secrets = committee
    g = chain.genesis
    parent = store.tip()
    reg = TaskBook(store, g).registry_at(parent)
    # the genesis window settles nothing, and a crowning is paid by the next block (rules.parent_moves)
    tpl = build_template(store, g, parent, 1, miner.public, [], parent.timestamp + 10, (),
                         reward=minted_reward(reg, 0, g.params.block_reward))
    from ml.training import train_candidate
    model = encode_model(train_candidate("linear", g.task.training, (), size="small"))
    block, _ = seal(tpl, model, miner, bytes(32))
    sealed = g.sealed[0]
    parts = [make_partial(g.committee, g.hash, s.member, s.share, sealed.point) for s in secrets[:2]]
    key = unseal(g.committee.group_key, sealed, combine(parts, 2))
    if corrupt is not None:
        parts[corrupt] = dataclasses.replace(parts[corrupt], proof=(parts[corrupt].proof[0],
                                                                    (parts[corrupt].proof[1] + 1) % 2**252))
    signers = [s.keypair for s in secrets[:2]]
    t_ms = (parent.timestamp + 10) * 1000
    listed = [(block.header.hash, miner.public, block.header.model_hash, possession(miner.public, model))]
    beacon = make_beacon(signers, g.chain_id, 1, parent.hash, listed, key, opened_ms=t_ms, time_ms=t_ms,
                         task_id=0, shard_index=1)
    beacon = dataclasses.replace(beacon, release=Release.of(parts, 2).encode())
    assert seeded_keypair("sponsor").public == g.sponsor
    return open_block(block, beacon, genesis=g, champion_bytes=g.block.model)


def check_committee(committee, block, code: str) -> RuleError:
    chain, store, _ = committee
    with pytest.raises(RuleError) as exc:
        validate_block(block, genesis=chain.genesis, store=store)
    assert exc.value.code == code, exc.value
    return exc.value


def test_a_committee_block_with_a_corrupted_release_is_a_bad_key_share_naming_its_member(committee):
    chain, store, secrets = committee
    miner = chain.miners[0]
    for member in (0, 1):
        err = check_committee(committee, committee_block(committee, miner, corrupt=member), "bad-key-share")
        assert f"member {secrets[member].member}'s share" in err.message
    try:                                      # the same block with its honest release passes every step before
        validate_block(committee_block(committee, miner), genesis=chain.genesis, store=store)
    except RuleError as exc:                  # the crowning test (a linear model may not beat the champion)
        assert exc.code == "not-better-than-champion", exc


def test_the_sponsor_mining_its_own_task_is_a_sponsor_entry(committee):
    from node.tools.testing import seeded_keypair
    check_committee(committee, committee_block(committee, seeded_keypair("sponsor")), "sponsor-entry")


def test_a_listing_whose_model_or_proof_differs_is_bad_claim(store):
    """Issue 18: the listing names the model hash and the key's proof of possession; a block whose header or
    bytes do not match them (a front-runner that copied another entry's model hash) is "bad-claim"."""
    import hashlib

    from chain.block import model_hash as mh_of
    from consensus.protocol.messages import possession
    block, _ = make_block(store)
    h = block.header
    for item in ((h.hash, h.miner, hashlib.sha256(b"other").digest(), possession(h.miner, block.model)),
                 (h.hash, h.miner, mh_of(block.model), possession(h.miner, b"not the bytes"))):
        forged = make_block(store, entered=False, beacon={"entries": [item]})[0]
        check(store, forged, "bad-claim")
