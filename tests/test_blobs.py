"""Shard blobs (issue 22 item 1, PROTOCOL §3.15): the blob reference encoding (hypothesis), packages whose
shards are blobs, opening a shard only from checked bytes, and the adult CSV genesis within 1 MiB."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.address import address_of
from ml import blobs as mlblobs
from ml.blobs import REF_SIZE, BlobDir, BlobHasher, BlobRef, BlobUnavailable, blob_id, check_blob, make_ref
from ml.errors import ShardError, TaskError
from ml.shards import BLOBS, PublicTask, externalise, open_shard, package_task
from ml.task import synthetic
from node.tools.testing import seeded_keypair

ADULT = Path("/work/shared/data/adult.csv")
if not ADULT.exists():
    ADULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "adult.csv"


@pytest.fixture
def isolated_sources():
    saved = mlblobs.blob_sources()
    mlblobs.use_blob_sources([])
    yield
    mlblobs.use_blob_sources(saved)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(min_size=1, max_size=3000), cuts=st.lists(st.integers(0, 3000), max_size=6),
       flip=st.integers(0, 10**6))
def test_blob_reference_encoding_property(data, cuts, flip):
    """A reference is 40 bytes id ‖ u64be(size), parses back to itself, names exactly these bytes (any flipped
    byte, any other length is refused), and the chunked hasher agrees with the one-shot id whatever the split."""
    ref = make_ref(data)
    assert len(ref) == REF_SIZE and ref.size == len(data) and ref.id == blob_id(data)
    assert BlobRef.parse(bytes(ref)) == ref
    assert check_blob(ref, data)
    i = flip % len(data)
    assert not check_blob(ref, data[:i] + bytes([data[i] ^ 1]) + data[i + 1:])
    assert not check_blob(ref, data[:-1]) and not check_blob(ref, data + b"\x00")
    hasher = BlobHasher(len(data))
    last = 0
    for c in sorted(min(c, len(data)) for c in cuts):
        hasher.update(data[last:c])
        last = c
    assert hasher.digest() is None or last == len(data)
    hasher.update(data[last:])
    assert hasher.digest() == ref.id
    # a reference of another size (same id) is another reference, and malformed ones never parse
    assert not check_blob(BlobRef(ref.id + (len(data) + 1).to_bytes(8, "big")), data)
    for bad in (bytes(ref)[:-1], bytes(ref) + b"\x00", ref.id + bytes(8), ref.id + (2**40).to_bytes(8, "big")):
        with pytest.raises(ShardError):
            BlobRef.parse(bad)


@pytest.fixture(scope="module")
def packaged():
    ds = synthetic(b"popchain-blob-test-seed", n_samples=1800, n_features=6, n_informative=3, n_classes=2)
    public, secret = package_task(ds, 3, 200, seed=b"split")
    blob_public, blob_map = externalise(public)
    return public, secret, blob_public, blob_map


def test_blob_package_is_small_round_trips_and_commits_the_references(packaged):
    public, _, blob_public, blob_map = packaged
    enc = blob_public.encode()
    assert len(enc) + sum(len(c) - REF_SIZE for c in public.ciphertexts) <= len(public.encode()) + 16
    back = PublicTask.decode(enc)
    assert back.version == BLOBS and back.blob_refs() == blob_public.blob_refs() and back.encode() == enc
    assert {bytes(r) for r in back.blob_refs()} == {bytes(r) for r in blob_map}
    # a reference of the wrong length, or too small to hold a shard ciphertext, is refused by the decoder
    for bad in (bytes(REF_SIZE - 1), blob_public.ciphertexts[0][:32] + (8).to_bytes(8, "big")):
        tampered = dataclasses.replace(blob_public, ciphertexts=(bad, *blob_public.ciphertexts[1:]))
        with pytest.raises(TaskError):
            PublicTask.decode(tampered.encode())


def test_a_shard_opens_only_from_checked_blob_bytes(packaged, tmp_path, isolated_sources):
    public, secret, blob_public, blob_map = packaged
    with pytest.raises(BlobUnavailable):                       # not here: "fetch it", not "bad shard"
        open_shard(blob_public, 1, secret.key(1))
    store = BlobDir(tmp_path / "blobs")
    ref = blob_public.blob_refs()[0]
    data = blob_map[ref]
    with pytest.raises(ShardError):                            # the store refuses bytes that do not match
        store.put(ref, data[:-1] + bytes([data[-1] ^ 1]))
    store.file(ref).parent.mkdir(parents=True, exist_ok=True)
    store.file(ref).write_bytes(data[:-1] + bytes([data[-1] ^ 1]))   # corrupted on disk behind our back
    mlblobs.use_blob_sources([store])
    with pytest.raises(BlobUnavailable):
        open_shard(blob_public, 1, secret.key(1))
    for r, d in blob_map.items():
        store.put(r, d)
    for r in (1, 2, 3):
        opened = open_shard(blob_public, r, secret.key(r))
        inline = open_shard(public, r, secret.key(r))
        assert (opened.X == inline.X).all() and (opened.y == inline.y).all()


@pytest.mark.skipif(not ADULT.exists(), reason="needs ../shared/data/adult.csv")
def test_adult_csv_genesis_fits_in_1_mib_with_its_shards_in_blobs(tmp_path, isolated_sources):
    from consensus.protocol.genesis import load_genesis
    from node.tools.genesis_setup import create_genesis_files
    owner = seeded_keypair("blob-test-owner")
    out = create_genesis_files(tmp_path / "chain", task=f"csv:{ADULT}", label_column="income",
                               allocations=[(address_of(owner.public), 10**9)])
    size = (tmp_path / "chain" / "genesis.bin").stat().st_size
    assert size == out["genesis_bytes"] <= 1 << 20, size
    genesis = load_genesis((tmp_path / "chain" / "genesis.bin").read_bytes())
    refs = genesis.task.blob_refs()
    assert len(refs) == genesis.n_rounds + 1 == out["blobs"] >= 4     # the shards and the public rows
    store = BlobDir(out["blob_dir"], writable=False)
    assert all(store.get(r) is not None for r in refs)
    assert out["blob_bytes"] == sum(r.size for r in refs)


@pytest.mark.skipif(not ADULT.exists(), reason="needs ../shared/data/adult.csv")
def test_public_rows_beyond_256_kib_are_a_blob_too_and_load_only_from_checked_bytes(tmp_path, isolated_sources):
    """1 round of 13,000 rows leaves ~29,700 public rows (~1.7 MB): they become a blob, genesis stays tiny."""
    from consensus.protocol.genesis import load_genesis
    from node.tools.genesis_setup import create_genesis_files
    owner = seeded_keypair("blob-test-owner")
    out = create_genesis_files(tmp_path / "c", task=f"csv:{ADULT}", label_column="income", rounds=1,
                               shard_size=13_000, allocations=[(address_of(owner.public), 10**9)])
    assert out["genesis_bytes"] <= 64 << 10 and out["n_train"] > 25_000 and out["blobs"] == 2
    task = load_genesis(Path(out["genesis"]).read_bytes()).task
    assert task.train_ref is not None and not task.training_loaded
    with pytest.raises(BlobUnavailable):
        _ = task.training
    mlblobs.use_blob_sources([BlobDir(out["blob_dir"], writable=False)])
    assert len(task.hydrate().training) == out["n_train"]


def test_genesis_create_explains_the_1_mib_limit_in_words():
    from node.tools.genesis_setup import GENESIS_GOAL, check_package_fits
    from node.tools.sizing import Sizing
    ds = synthetic(b"popchain-blob-test-seed", n_samples=300, n_features=6, n_informative=3, n_classes=2)
    assert check_package_fits(ds, Sizing(100, 1000, None, None, 10, 100), GENESIS_GOAL, "the genesis",
                              blobs=True) <= GENESIS_GOAL
    with pytest.raises(TaskError, match=r"over its 1 MiB limit: the rows are blobs outside it, but each of the "
                                        r"20,000 hidden shards keeps 80 bytes"):
        check_package_fits(ds, Sizing(100, 20_000, None, None, 10, 100), GENESIS_GOAL, "the genesis", blobs=True)


def test_engine_parks_a_block_whose_shard_blob_is_missing_and_accepts_it_once_the_blob_is_here(tmp_path,
                                                                                                 isolated_sources):
    """A node without the round's blob must not call the block invalid (nodes that have it would accept it: a
    split); it parks it, and judges it once the blob is stored (Engine.parked_blocks, PROTOCOL §3.15)."""
    import hashlib

    from benchmarks.simulator import _rng_bytes
    from chain.store import ChainStore
    from consensus.engine import Engine
    from consensus.keyholder import Keyholder
    from consensus.mining import open_block, seal
    from consensus.protocol.genesis import create_genesis
    from consensus.protocol.messages import Beacon
    from consensus.protocol.settlement import miner_funding
    from ml.model import encode_model
    from ml.shards import split_test
    from ml.training import train_candidate
    from tests.test_consensus_helpers import (
        BALANCE,
        BOND,
        CHAIN_ID,
        KEYHOLDER,
        MINERS,
        ROUNDS,
        SHARD,
        TEST_PARAMS,
    )

    seed = b"consensus-test-world-seed"
    rest, _ = split_test(synthetic(seed, n_samples=ROUNDS * SHARD + 1600), 400, seed)
    shard_blobs: dict[bytes, bytes] = {}
    genesis, secret = create_genesis(rest, chain_id=CHAIN_ID, rounds=ROUNDS, shard_size=SHARD,
                                     allocations=[a for m in MINERS for a in miner_funding(m.public, BALANCE, BOND)],
                                     keyholder_pubkeys=[KEYHOLDER.public], params=TEST_PARAMS,
                                     timestamp=1_700_000_000, n_train=1200, seed=seed, rng=_rng_bytes(seed),
                                     shard_blobs=shard_blobs)
    store = ChainStore.open(tmp_path / "db")
    try:
        engine = Engine(store, genesis)
        kh = Keyholder(engine, secret, [KEYHOLDER])
        t0 = 1_700_000_100.0
        kh.step(t0)
        champion = engine.champion_model()
        sealed = []
        for i, miner in enumerate(MINERS[:2]):
            model = encode_model(train_candidate("linear", genesis.task.training, (), seed=i, caps=genesis.model_caps))
            block, entry = seal(engine.build_template(miner.public, [], int(t0)), model, miner,
                                hashlib.sha256(miner.public + model).digest())
            assert engine.add_entry(entry) and kh.on_entry(entry)
            sealed.append(block)
        beacon = next(a for a in kh.step(t0 + 4) if isinstance(a, Beacon))
        blob_dir = BlobDir(tmp_path / "blobs")
        mlblobs.use_blob_sources([blob_dir])
        for r, d in shard_blobs.items():           # the miners' side had the blob to open their blocks ...
            blob_dir.put(BlobRef.parse(r), d)
        blocks = [open_block(b, beacon, genesis=genesis, champion_bytes=champion) for b in sealed]
        for r in shard_blobs:                      # ... this node does not (yet)
            blob_dir.remove(BlobRef.parse(r))
        verdicts = [engine.add_block(b) for b in blocks]
        assert [v.status for v in verdicts] == ["orphan", "orphan"], [(v.status, v.code) for v in verdicts]
        assert engine.tip().hash == genesis.hash
        assert {b.hash for b in engine.parked_blocks()} == {b.hash for b in blocks}
        for r, d in shard_blobs.items():
            blob_dir.put(BlobRef.parse(r), d)
        verdicts = [engine.add_block(b) for b in engine.parked_blocks()]
        assert any(v.ok for v in verdicts), [(v.status, v.code) for v in verdicts]
        assert engine.tip().height == 1
    finally:
        store.close()
