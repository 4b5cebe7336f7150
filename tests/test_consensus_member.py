"""Committee genesis (version 2), member files and share files (consensus.keyholder, PROTOCOL §3.1, §3.14).

Attack first: a member file of another chain or another member, a tampered genesis committee field, a
minority threshold, a share file for someone else; then: t member files reconstruct every genesis shard key
(checked against the shard commitments), one file of a 2-of-3 committee holds no key, and a 1-of-1 member
file drives today's single Keyholder unchanged (real LevelDB)."""
from __future__ import annotations

import dataclasses
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chain.block import Block
from chain.crypto import tagged_hash
from chain.encoding import pack, unpack
from chain.errors import DecodeError, RuleError
from consensus.keyholder import (
    SHARE_DIR,
    add_share_file,
    check_member,
    deal_batch,
    load_keyholder_file,
    load_member_file,
    load_share_file,
    scan_share_dir,
    share_file,
)
from consensus.protocol.genesis import CONFIG_TAG, load_genesis
from consensus.protocol.shares import combine_shares, decode_material
from ml.shards import open_shard
from node.tools.testing import build_chain_offline, make_test_chain


@pytest.fixture(scope="module")
def committee(tmp_path_factory):
    return make_test_chain(tmp_path_factory.mktemp("c23"), rounds=4, shard_size=40, n_train=300, keyholders=3,
                           threshold=2)


@pytest.fixture(scope="module")
def members(committee):
    return [load_member_file(p.read_bytes()) for p in committee.member_paths]


def test_committee_genesis_carries_the_material(committee):
    g = committee.genesis
    assert g.committee is not None and (g.threshold, len(g.keyholders)) == (2, 3)
    assert decode_material(g.committee.encode(), g.keyholders, 2, g.n_rounds) == g.committee


def test_two_members_reconstruct_every_key_one_holds_none(committee, members):
    g = committee.genesis
    for m, path in zip(members, committee.member_paths):
        from consensus.keyholder import is_member_file
        assert is_member_file(path.read_bytes())
        check_member(m, g)
        assert m.keypair.public == g.keyholders[m.member - 1]
        with pytest.raises(ValueError, match="2-of-3 committee holds shares"):
            m.whole_keys()
    for r, shard in enumerate(g.task.commitments, 1):
        shares = [m.share_for(shard) for m in members]
        for s in shares:
            from consensus.protocol.shares import check_share
            check_share(s, g.committee, g.keyholders, shard_commitment=shard, leaf=r - 1)
        for pair in ((0, 1), (0, 2), (1, 2)):
            key = combine_shares([shares[i] for i in pair], 2)
            open_shard(g.task, r, key)      # ShardError if the key did not open the committed shard
        # a single share is no key: it does not decrypt the shard
        with pytest.raises(Exception):
            open_shard(g.task, r, shares[0].value.to_bytes(33, "big")[1:])


def test_member_file_of_another_chain_or_member_is_refused(committee, members, tmp_path):
    other = make_test_chain(tmp_path / "other", rounds=4, shard_size=40, n_train=300, keyholders=3, threshold=2,
                            chain_id="popchain-other")
    with pytest.raises(RuleError, match="bad-key-share: the member file is for another chain"):
        check_member(members[0], other.genesis)
    # member 1's shares under member 2's name: the key is not at its place / the batch is not its
    m1, m2 = members[0], members[1]
    forged = unpack(m1.encode(), max_size=1 << 20)
    forged[2] = 2
    with pytest.raises((DecodeError, RuleError)):
        check_member(load_member_file(pack(forged)), committee.genesis)
    # a member file in the node's keyholder loader: a 2-of-3 member cannot run a round alone
    with pytest.raises(ValueError, match="committee protocol"):
        load_keyholder_file(m2.encode(), committee.genesis)


def _retag(genesis_bytes: bytes, change) -> bytes:
    """The genesis block with its configuration edited by ``change`` and the salt re-derived (a dealer or a
    relay forging a committee field: the header then matches, only the committee rule can refuse it)."""
    block = Block.decode(genesis_bytes)
    config = unpack(block.payload, max_size=1 << 26)
    change(config)
    payload = pack(config)
    header = dataclasses.replace(block.header, salt=tagged_hash(CONFIG_TAG, payload))
    return Block(header, block.txs, block.model, payload).encode()


@pytest.mark.parametrize("attack", ["minority", "roots", "n_shards", "not-bytes", "dropped"])
def test_tampered_committee_genesis_is_refused(committee, attack):
    raw = committee.genesis.encode()

    def change(config):
        material = unpack(config[8], max_size=4096)
        if attack == "minority":        # 1-of-3: two different beacons could both be signed
            config[5] = 1
            material[1] = 1
        elif attack == "roots":
            material[3] = material[3][:2]
        elif attack == "n_shards":
            material[2] += 1
        config[8] = pack(material)
        if attack == "not-bytes":
            config[8] = 7
        if attack == "dropped":
            del config[8]
    with pytest.raises(RuleError) as err:
        load_genesis(_retag(raw, change))
    assert err.value.code == "bad-genesis"


def test_version_1_genesis_has_no_committee(tmp_path):
    single = make_test_chain(tmp_path, rounds=2, shard_size=40, n_train=300)
    assert single.genesis.committee is None and single.member_paths == ()
    from consensus.keyholder import is_member_file
    assert not is_member_file(single.keyholder_path.read_bytes()) and not is_member_file(b"\x00junk")


def test_one_of_one_member_file_runs_todays_keyholder(tmp_path):
    chain = make_test_chain(tmp_path / "c11", rounds=3, shard_size=60, n_train=300, keyholders=1, threshold=1)
    g = chain.genesis
    assert g.committee is not None and len(g.keyholders) == 1
    secret, keypairs = load_keyholder_file(chain.keyholder_path.read_bytes(), g)
    assert [kp.public for kp in keypairs] == list(g.keyholders)
    for r in range(1, g.n_rounds + 1):
        open_shard(g.task, r, secret.key(r))
    assert build_chain_offline(tmp_path / "node", chain, 1) >= 1     # Engine + Keyholder, real LevelDB


def test_new_batch_share_files_reach_a_running_member(committee, members, tmp_path):
    g = committee.genesis
    keys = [os.urandom(32) for _ in range(3)]
    shards = [os.urandom(32) for _ in range(3)]
    material_bytes, files = deal_batch(g, keys, shards)
    material = decode_material(material_bytes, g.keyholders, g.threshold, 3)
    assert len(files) == 3
    # member 2 picks its file up from <datadir>/key-shares/, and refuses member 3's file
    d = tmp_path / SHARE_DIR
    d.mkdir()
    (d / "task1-ext1.shares").write_bytes(files[1])
    m2 = scan_share_dir(members[1], d)
    assert m2.share_for(shards[0]) is not None and members[1].share_for(shards[0]) is None
    assert m2.batch_for(material, g.keyholders) is not None
    with pytest.raises(RuleError, match="bad-key-share"):
        add_share_file(members[1], files[2])
    (d / "wrong.shares").write_bytes(files[2])
    with pytest.raises(RuleError, match="wrong.shares"):
        scan_share_dir(members[1], d)
    (d / "wrong.shares").write_bytes(b"\x93junk")
    with pytest.raises(DecodeError, match="wrong.shares"):
        scan_share_dir(members[1], d)
    m1 = add_share_file(members[0], files[0])
    for j, shard in enumerate(shards):
        assert combine_shares([m1.share_for(shard), m2.share_for(shard)], 2) == keys[j]
    assert load_share_file(files[0])[0] == g.hash
    with pytest.raises(DecodeError):
        load_share_file(files[0][:-1])
    # a share file of another chain
    with pytest.raises(RuleError, match="another chain"):
        add_share_file(members[0], share_file(bytes(32), m1.batches[1]))


def test_committee_share_source(committee, tmp_path):
    from consensus.keyholder import committee_shares
    g = committee.genesis
    sources = [committee_shares(p.read_bytes(), g, tmp_path / f"kh{i}")[1]
               for i, p in enumerate(committee.member_paths)]
    for r in range(1, g.n_rounds + 1):
        released = {i: s.share_for(r) for i, s in enumerate(sources)}
        for checker in sources:
            for i, share in released.items():
                checker.check_share(i, r, share)
        with pytest.raises(RuleError, match="bad-key-share"):          # member 1's share sent as member 2's
            sources[0].check_share(1, r, released[0])
        with pytest.raises(RuleError, match="bad-key-share"):          # garbage bytes
            sources[0].check_share(0, r, released[0][:-3])
        with pytest.raises(RuleError, match="bad-key-share"):          # round 1's share offered for round 2
            sources[0].check_share(0, r % g.n_rounds + 1, released[0])
        open_shard(g.task, r, sources[1].combine(r, {0: released[0], 2: released[2]}))
        with pytest.raises(RuleError, match="threshold"):
            sources[1].combine(r, {2: released[2]})
    with pytest.raises(RuleError, match="no genesis shard"):
        sources[0].share_for(g.n_rounds + 1)
    with pytest.raises(RuleError, match="another chain"):
        other = make_test_chain(tmp_path / "o", rounds=4, shard_size=40, n_train=300, keyholders=3, threshold=2,
                                chain_id="popchain-o2")
        committee_shares(committee.member_paths[0].read_bytes(), other.genesis, tmp_path / "x")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(t=st.integers(0, 5), t_material=st.integers(0, 5), roots=st.integers(0, 5), shards=st.integers(2, 6))
def test_committee_genesis_rule(committee, t, t_material, roots, shards):
    # accepted iff the committee is a majority and the material fits it and the task exactly (§3.1)
    raw = committee.genesis.encode()
    true_roots = unpack(committee.genesis.committee.encode(), max_size=4096)[3]

    def change(config):
        config[5] = t
        config[8] = pack([1, t_material, shards, (true_roots * 2)[:roots]])
    ok = 2 * t > 3 and t <= 3 and t_material == t and roots == 3 and shards == committee.genesis.n_rounds
    try:
        g = load_genesis(_retag(raw, change))
    except RuleError as exc:
        assert exc.code == "bad-genesis" and not ok
    else:
        assert ok and g.committee is not None and g.threshold == t


def test_batch_material_rule(committee, tmp_path):
    from consensus.protocol.tasks import check_batch_material
    g = committee.genesis
    material, _ = deal_batch(g, [os.urandom(32)] * 2, [os.urandom(32), os.urandom(32)])
    assert check_batch_material(g, material, 2) is not None
    for data, n in ((material, 3), (b"", 2), (material[:-2], 2)):
        with pytest.raises(RuleError) as err:
            check_batch_material(g, data, n)
        assert err.value.code == "bad-keyholder-material"
    single = make_test_chain(tmp_path, rounds=2, shard_size=40, n_train=300).genesis
    assert check_batch_material(single, b"", 2) is None
    with pytest.raises(RuleError, match="bad-keyholder-material"):
        check_batch_material(single, material, 2)
    with pytest.raises(ValueError, match="single keyholder"):
        deal_batch(single, [os.urandom(32)], [os.urandom(32)])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(offset=st.integers(0, 10**6), value=st.integers(0, 255), cut=st.booleans())
def test_mutated_member_and_share_files_raise_typed_errors(committee, offset, value, cut):
    # a flipped byte or a truncated file: DecodeError (or, if it still decodes, the genesis check refuses a
    # changed share / key / hash); never another exception
    for raw, load in ((committee.member_paths[1].read_bytes(), load_member_file),
                      (share_file(committee.genesis.hash, load_member_file(
                          committee.member_paths[1].read_bytes()).batches[0]), lambda d: load_share_file(d)[1])):
        data = bytearray(raw)
        i = offset % len(data)
        if cut:
            data = data[:i]
        else:
            data[i] = value
        try:
            loaded = load(bytes(data))
        except DecodeError:
            continue
        if bytes(data) != raw and hasattr(loaded, "genesis_hash"):
            with pytest.raises(RuleError) as err:       # every field is bound: any change is refused
                check_member(loaded, committee.genesis)
            assert err.value.code == "bad-key-share"
