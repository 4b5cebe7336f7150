"""Committee genesis (version 3) and member files (consensus.protocol.genesis, consensus.keyholder; PROTOCOL §3.1,
§3.14).

Attack first: the genesis creator's files and one member file (t − 1 of a 2-of-3 committee) tried as keys for
every shard; a member file of another chain or another member; a tampered genesis committee field (a changed
commitment, a minority threshold, sealed keys that do not cover the task, a missing sponsor, the old dealt
version 2); then: any t members' releases give every shard key, a VRF-generated task needs a committee, and the
batch rule for a task message's sealed keys."""
from __future__ import annotations

import dataclasses
import itertools
import os

import nacl.secret
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chain.block import Block
from chain.crypto import tagged_hash
from chain.encoding import pack, unpack
from chain.errors import DecodeError, RuleError
from consensus.keyholder import check_member, is_member_file, load_keyholder_file, load_member_file
from consensus.protocol.genesis import CONFIG_TAG, load_genesis
from consensus.protocol.group import L, lagrange_at_zero, mul
from consensus.protocol.release import combine, make_partial, seal_keys, unseal
from ml.errors import ShardError
from ml.shards import open_shard
from node.tools.testing import make_test_chain


@pytest.fixture(scope="module")
def committee(tmp_path_factory):
    return make_test_chain(tmp_path_factory.mktemp("c23"), rounds=4, shard_size=40, n_train=300, keyholders=3,
                           threshold=2)


@pytest.fixture(scope="module")
def members(committee):
    return [load_member_file(p.read_bytes()) for p in committee.member_paths]


def _opens(g, r: int, key: bytes) -> bool:
    try:
        open_shard(g.task, r, key)
        return True
    except ShardError:
        return False


def test_committee_genesis_carries_the_key_and_the_sealed_task(committee, members):
    g = committee.genesis
    assert g.committee is not None and (g.threshold, len(g.keyholders)) == (2, 3)
    assert g.committee.keyholders == g.keyholders and len(g.sealed) == g.n_rounds and g.sponsor != bytes(32)
    for m, path in zip(members, committee.member_paths):
        assert is_member_file(path.read_bytes())
        check_member(m, g)


def test_any_two_members_open_every_shard_one_opens_none(committee, members):
    """The committee's releases give each key; one member's file — its share, its signing seed, any 32 bytes
    in it — opens no shard, nor does its share read as if it were the secret (t − 1 = 1 learns nothing)."""
    g = committee.genesis
    key = g.committee
    for r in range(1, g.n_rounds + 1):
        point = g.sealed[r - 1].point
        parts = [make_partial(key, g.hash, m.member, m.share, point) for m in members]
        for pair in itertools.combinations(parts, 2):
            assert _opens(g, r, unseal(key.group_key, g.sealed[r - 1], combine(pair, 2)))
        for m, part in zip(members, parts):
            guesses = [unseal(key.group_key, g.sealed[r - 1], part.value),                    # σ_i as σ
                       unseal(key.group_key, g.sealed[r - 1], mul(lagrange_at_zero([m.member])[0], part.value))]
            raw = committee.member_paths[m.member - 1].read_bytes()
            guesses += [raw[i:i + 32] for i in range(len(raw) - 31)]
            assert not any(_opens(g, r, k) for k in guesses if len(k) == 32)
    # nothing the genesis creator wrote opens a shard either (it wrote only genesis.bin and no secret file)
    raw = committee.genesis_path.read_bytes()
    assert not any(_opens(g, 1, raw[i:i + 32]) for i in range(0, len(raw) - 31, 7))


def test_member_file_of_another_chain_or_member_is_refused(committee, members, tmp_path):
    other = make_test_chain(tmp_path / "other", rounds=4, shard_size=40, n_train=300, keyholders=3, threshold=2,
                            chain_id="popchain-other")
    with pytest.raises(RuleError, match="another committee"):
        check_member(members[0], other.genesis)
    forged = unpack(members[0].encode(), max_size=1 << 20)
    forged[2] = 2              # member 1's share under member 2's name
    with pytest.raises(RuleError, match="bad-key-share"):
        check_member(load_member_file(pack(forged)), committee.genesis)
    forged = unpack(members[0].encode(), max_size=1 << 20)
    forged[6] = ((int.from_bytes(forged[6], "little") + 1) % L).to_bytes(32, "little")
    with pytest.raises(RuleError, match="share does not match"):
        check_member(load_member_file(pack(forged)), committee.genesis)
    with pytest.raises(ValueError, match="committee member"):
        load_keyholder_file(members[1].encode(), committee.genesis)


def _retag(genesis_bytes: bytes, change) -> bytes:
    """The genesis block with its configuration edited by ``change`` and the salt re-derived (a creator or a
    relay forging a committee field: the header then matches, only the committee rule can refuse it)."""
    block = Block.decode(genesis_bytes)
    config = unpack(block.payload, max_size=1 << 26)
    change(config)
    payload = pack(config)
    header = dataclasses.replace(block.header, salt=tagged_hash(CONFIG_TAG, payload))
    return Block(header, block.txs, block.model, payload).encode()


@pytest.mark.parametrize("attack", ["minority", "commitment", "signature", "sealed", "sponsor", "not-bytes",
                                    "dropped", "version2"])
def test_tampered_committee_genesis_is_refused(committee, attack):
    raw = committee.genesis.encode()

    def change(config):
        key = unpack(config[8], max_size=1 << 16)
        if attack == "minority":        # 1-of-3: two different beacons could both be signed
            config[5] = 1
        elif attack == "commitment":    # the creator substitutes a group key it knows the secret of
            from consensus.protocol.group import base_mul
            key[4][0] = base_mul(12345)
        elif attack == "signature":
            key[7] = key[7][1:]
        elif attack == "sealed":
            sealed = unpack(config[9][2], max_size=1 << 20)
            sealed[1] = sealed[1][:-1]
            config[9][2] = pack(sealed)
        elif attack == "sponsor":
            config[9][0] = bytes(32)
        config[8] = pack(key)
        if attack == "not-bytes":
            config[8] = 7
        if attack == "dropped":
            del config[9]
        if attack == "version2":
            config[0] = 2
    with pytest.raises(RuleError) as err:
        load_genesis(_retag(raw, change))
    assert err.value.code == "bad-genesis"


def test_version_1_genesis_has_no_committee_and_no_vrf_task(tmp_path):
    single = make_test_chain(tmp_path, rounds=2, shard_size=40, n_train=300)
    assert single.genesis.committee is None and single.member_paths == ()
    assert not is_member_file(single.keyholder_path.read_bytes()) and not is_member_file(b"\x00junk")
    from ml.generator import world_from_seed
    from ml.shards import package_vrf
    vrf = package_vrf(world_from_seed(b"x" * 32, n_features=8, n_informative=4, n_classes=2), 2, 50, n_train=200)

    def change(config):
        config[7] = vrf.encode()
    with pytest.raises(RuleError, match="needs a keyholder committee"):
        load_genesis(_retag(single.genesis.encode(), change))


def test_batch_material_rule(committee, tmp_path):
    from consensus.protocol.tasks import check_batch_material
    g = committee.genesis
    material = seal_keys(g.committee.group_key, [os.urandom(32), os.urandom(32)])
    assert len(check_batch_material(g, material, 2)) == 2
    for data, n in ((material, 3), (b"", 2), (material[:-2], 2)):
        with pytest.raises(RuleError) as err:
            check_batch_material(g, data, n)
        assert err.value.code == "bad-keyholder-material"
    assert check_batch_material(g, b"", 5, vrf=True) is None
    with pytest.raises(RuleError, match="VRF-generated task seals no keys"):
        check_batch_material(g, material, 2, vrf=True)
    single = make_test_chain(tmp_path, rounds=2, shard_size=40, n_train=300).genesis
    assert check_batch_material(single, b"", 2) is None
    with pytest.raises(RuleError, match="bad-keyholder-material"):
        check_batch_material(single, material, 2)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(offset=st.integers(0, 10**6), value=st.integers(0, 255), cut=st.booleans())
def test_mutated_member_files_raise_typed_errors(committee, offset, value, cut):
    """A flipped byte or a truncated file: DecodeError (or, if it still decodes, the genesis check refuses a
    changed share, key or committee); never another exception."""
    raw = committee.member_paths[1].read_bytes()
    data = bytearray(raw)
    i = offset % len(data)
    if cut:
        data = data[:i]
    else:
        data[i] = value
    try:
        loaded = load_member_file(bytes(data))
    except DecodeError:
        return
    if bytes(data) != raw:
        with pytest.raises(RuleError) as err:
            check_member(loaded, committee.genesis)
        assert err.value.code == "bad-key-share"


def test_a_secretbox_key_is_what_a_shard_takes(committee):
    # guard for the "opens nothing" tests above: a random key never opens, the revealed key does
    g = committee.genesis
    assert not _opens(g, 1, nacl.secret.random(32))


def test_a_vrf_task_is_extended_by_its_labels_and_seals_nothing(tmp_path):
    """A VRF-generated task's extension lists the labels of the next shards and no ciphertext (nobody has a key
    to seal); labels of other shards, or sealed shards, are refused (``bad-task``)."""
    from chain.store import ChainStore
    from consensus.engine import Engine
    from consensus.protocol.tasks import make_task_extension
    from ml.shards import vrf_labels
    from node.tools.committee_kit import make_committee_chain
    chain = make_committee_chain(tmp_path / "c", rounds=3)
    g = chain.genesis
    assert g.task.vrf and g.sponsor == bytes(32) and not g.sealed
    store = ChainStore.open(tmp_path / "db")
    try:
        engine = Engine(store, g)
        world, size = g.task.world, g.task.shard_size
        assert world is not None

        def ext(labels, cts, material=b""):
            return make_task_extension(list(chain.member_keys[:2]), g.chain_id, 0, 1, labels, cts,
                                       keyholder_material=material)
        for bad, code in ((ext(vrf_labels(world, size, 5, 2), (b"",) * 2), "bad-task"),
                          (ext(vrf_labels(world, size, 4, 2), (b"x" * 200,) * 2,
                               seal_keys(g.committee.group_key, [bytes(32)] * 2)), "bad-task"),
                          (ext(vrf_labels(world, size, 4, 2), (b"",) * 2, b"\x01"), "bad-keyholder-material")):
            with pytest.raises(RuleError) as err:
                engine.add_task_message(bad)
            assert err.value.code == code, (code, err.value)
        assert engine.add_task_message(ext(vrf_labels(world, size, 4, 2), (b"",) * 2))
    finally:
        store.close()
