"""The task tooling without a node: `task create` files (sizing under the chain's own test, the sponsor's
signature, secrets 0600, no overwrite), governance signing attacked (wrong chain, foreign keyholder file,
too few signatures), extension batches (indices, commitments, drift continuing, rows refused when they do not
fit), the task secret decoder against hostile bytes, and the command line's one-line errors."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.errors import DecodeError, PopError
from consensus.keyholder import keyholder_file
from consensus.protocol.genesis import load_genesis
from consensus.protocol.tasks import TaskAnnouncement, decode_task_message
from ml.errors import MLError, ShardError, TaskError
from ml.shards import PublicTask, SecretTask, open_shard
from node.tools.task_setup import (
    SigningError,
    TaskSecret,
    build_extension,
    create_task_files,
    governance_sign,
    secret_keys_of,
    shard_world,
)
from node.tools.testing import make_test_chain, seeded_keypair


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("task-cli")
    chain = make_test_chain(d / "chain", rounds=2)
    genesis = load_genesis(chain.genesis_path.read_bytes())
    out = create_task_files(d / "t1", genesis, chain.users[0], rounds=3, shard_size=60, detect=0.05,
                            bounty=900, drift_milli=40)
    return chain, genesis, out


def test_create_writes_a_sponsor_signed_announcement_and_a_private_secret(made) -> None:
    chain, genesis, out = made
    msg = decode_task_message(Path(out["announcement"]).read_bytes())
    assert isinstance(msg, TaskAnnouncement) and msg.chain_id == genesis.chain_id
    assert msg.sponsor == chain.users[0].public and msg.verify_sponsor() and msg.signatures == ()
    assert (msg.bounty, msg.per_crowning) == (900, 300) and out["rounds"] == 3 and out["shard_size"] == 60
    assert os.stat(out["secret"]).st_mode & 0o777 == 0o600
    public = PublicTask.decode(msg.package)
    secret = TaskSecret.decode(Path(out["secret"]).read_bytes())
    for i in (1, 2, 3):                       # every key opens its committed shard
        assert len(open_shard(public, i, secret.secret.key(i)).y) == 60
    assert secret.world is not None
    assert secret.world.to_obj() == shard_world(public, 3, secret.secret.key(3)).to_obj()
    with pytest.raises(TaskError, match="already exists"):
        create_task_files(Path(out["announcement"]).parent, genesis, chain.users[0], rounds=3, shard_size=60,
                          detect=0.05)


def test_a_tampered_announcement_loses_the_sponsor_signature(made) -> None:
    _, _, out = made
    msg = decode_task_message(Path(out["announcement"]).read_bytes())
    assert not dataclasses.replace(msg, bounty=10**9).verify_sponsor()   # nobody raises the escrow for the sponsor


def test_governance_signing_is_refused_for_the_wrong_keys_or_chain(made, tmp_path: Path) -> None:
    chain, genesis, out = made
    msg = decode_task_message(Path(out["announcement"]).read_bytes())
    signed = governance_sign(msg, chain.keyholder_path.read_bytes(), genesis)
    assert signed.verify(genesis.keyholders, genesis.threshold) and signed.verify_sponsor()
    foreign = keyholder_file(SecretTask((), ()).encode(), [seeded_keypair("not-a-keyholder")])
    with pytest.raises(SigningError, match="none of this chain's governance"):
        governance_sign(msg, foreign, genesis)
    with pytest.raises(SigningError, match="for chain"):
        governance_sign(dataclasses.replace(msg, chain_id="popchain-other"), chain.keyholder_path.read_bytes(),
                        genesis)
    two = dataclasses.replace(genesis, threshold=2)     # a chain that needs two keyholders
    with pytest.raises(SigningError, match="1 of the 2"):
        governance_sign(msg, chain.keyholder_path.read_bytes(), two)
    assert governance_sign(msg, chain.keyholder_path.read_bytes(), two, partial=True).signatures


def test_an_extension_continues_the_task_at_its_next_indices(made) -> None:
    _, _, out = made
    msg = decode_task_message(Path(out["announcement"]).read_bytes())
    public = PublicTask.decode(msg.package)
    secret = TaskSecret.decode(Path(out["secret"]).read_bytes())
    batch = build_extension(public, 1, 4, 2, world=secret.world, drift_milli=secret.drift_milli)
    grown = dataclasses.replace(public, commitments=public.commitments + batch.commitments,
                                ciphertexts=public.ciphertexts + batch.ciphertexts)
    keys = batch.secret.secret
    assert batch.secret.first_index == 4 and len(keys.keys) == 2
    assert SecretTask.decode(secret_keys_of(batch.secret.encode())).keys == keys.keys
    for j, index in enumerate((4, 5)):
        assert len(open_shard(grown, index, keys.keys[j]).y) == public.shard_size
    assert shard_world(grown, 5, keys.keys[1]).centres.tolist() != secret.world.centres.tolist()   # it drifts
    with pytest.raises(MLError):   # a shard sealed for index 4 does not open as index 3's (commitment binds it)
        open_shard(dataclasses.replace(grown, ciphertexts=grown.ciphertexts[:2] + (grown.ciphertexts[3],) +
                                       grown.ciphertexts[3:]), 3, keys.keys[0])
    with pytest.raises(TaskError, match="world"):
        build_extension(public, 1, 4, 2)


def test_a_rows_extension_needs_rows_of_the_same_task() -> None:
    from ml.shards import package_task
    from ml.task import load_builtin
    iris = load_builtin("iris")
    public, _ = package_task(iris, 2, 20, seed=b"s" * 32)
    with pytest.raises(TaskError, match="--data"):
        build_extension(public, 1, 3, 1)
    with pytest.raises(TaskError, match="rows"):
        build_extension(public, 1, 3, 9, data=iris)
    wine = load_builtin("wine")
    with pytest.raises(TaskError, match="do not match"):
        build_extension(public, 1, 3, 1, data=wine)
    batch = build_extension(public, 1, 3, 2, data=iris)
    grown = dataclasses.replace(public, commitments=public.commitments + batch.commitments,
                                ciphertexts=public.ciphertexts + batch.ciphertexts)
    assert len(open_shard(grown, 4, batch.secret.secret.keys[1]).y) == 20


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200))
def test_task_secret_decoder_raises_typed_errors_only(data: bytes) -> None:
    try:
        TaskSecret.decode(data)
    except (PopError, MLError):
        pass


def test_task_secret_round_trip_and_hostile_fields(made) -> None:
    _, _, out = made
    raw = Path(out["secret"]).read_bytes()
    assert TaskSecret.decode(raw).encode() == raw
    from chain.encoding import pack
    for bad in (pack([2, -1, 1, b"", [0]]), pack([1, -1, 0, b"", [0]]), pack([1, -1, 1, "x", [0]]),
                pack([1, -1, 1, b"", []])):
        with pytest.raises((DecodeError, TaskError)):
            TaskSecret.decode(bad)


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cli import main
    assert main(["task", "create", "--sponsor-wallet", str(tmp_path / "none.popkeys"), "--out", str(tmp_path)]) == 1
    assert "no wallet at" in capsys.readouterr().err
    assert main(["task", "announce", str(tmp_path / "missing.announce"), "--keyholder", "k"]) == 1
    assert "cannot read task message" in capsys.readouterr().err
    (tmp_path / "junk.announce").write_bytes(b"\x93\x01\x02\x03")
    assert main(["task", "announce", str(tmp_path / "junk.announce"), "--keyholder", "k"]) == 1
    err = capsys.readouterr().err
    assert "is not a task announcement or extension" in err and err.count("\n") == 1
    with pytest.raises(SystemExit) as exc:
        main(["task", "show", "-1"])
    assert exc.value.code == 2


def test_cli_create_and_sign_only_offline(made, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import hashlib
    import json

    import nacl.pwhash

    from chain.wallet import Wallet
    from cli import main
    chain, genesis, _ = made
    w = Wallet.create(tmp_path / "s.popkeys", "pw", opslimit=nacl.pwhash.argon2id.OPSLIMIT_MIN,
                      memlimit=nacl.pwhash.argon2id.MEMLIMIT_MIN)
    w.import_seed(hashlib.sha256(b"popchain/testing/user1").digest(), "sponsor")
    (tmp_path / "pw").write_text("pw\n")
    assert main(["task", "create", "--task", "synthetic", "--rounds", "2", "--shard-size", "50",
                 "--sponsor-wallet", str(tmp_path / "s.popkeys"), "--sponsor-key", "sponsor",
                 "--password-file", str(tmp_path / "pw"), "--bounty", "1000", "--per-crowning", "100",
                 "--genesis", str(chain.genesis_path), "--out", str(tmp_path / "t"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["per_crowning"] == 100 and out["sponsor"] == chain.users[1].public.hex()
    assert main(["task", "announce", out["announcement"], "--keyholder", str(chain.keyholder_path), "--sign-only",
                 "--genesis", str(chain.genesis_path)]) == 0
    assert "1 governance signature(s) of the 1 needed" in capsys.readouterr().out
    msg = decode_task_message(Path(out["announcement"]).read_bytes())
    assert msg.verify(genesis.keyholders, genesis.threshold) and msg.verify_sponsor()


def test_a_committee_chain_task_is_sealed_to_the_committee_and_signed_by_two_members(tmp_path: Path) -> None:
    """Issue 24 x 11: on a 2-of-3 DKG chain `task create` seals the shard keys to the committee inside the
    announcement and writes no secret file at all (a synthetic task is VRF-generated: it has no keys); any two
    members' releases give each key the sponsor sealed, one member's does not; a member file signs for its one
    governance key, and two of them reach the threshold."""
    from consensus.keyholder import load_member_file
    from consensus.protocol.release import combine, make_partial, unseal
    from consensus.protocol.tasks import check_batch_material
    chain = make_test_chain(tmp_path / "chain", rounds=2, keyholders=3, threshold=2)
    genesis = load_genesis(chain.genesis_path.read_bytes())
    out = create_task_files(tmp_path / "t", genesis, chain.users[0], task="digits", rounds=2, shard_size=60,
                            detect=0.1, public_rows=300)
    assert out["secret"] is None and not (tmp_path / "t" / "task.secret").exists() and not out["vrf"]
    msg = decode_task_message(Path(out["announcement"]).read_bytes())
    public = PublicTask.decode(msg.package)
    # the data task's ciphertexts are blobs beside the announcement (§3.15): this process reads them from there
    from ml.blobs import BlobDir, add_blob_source
    add_blob_source(BlobDir(tmp_path / "t" / "blobs", writable=False))
    sealed = check_batch_material(genesis, msg.keyholder_material, public.n_rounds)
    assert sealed is not None and len(sealed) == public.n_rounds
    members = [load_member_file(m.read_bytes()) for m in chain.member_paths]
    key = genesis.committee
    for j, item in enumerate(sealed, 1):
        parts = [make_partial(key, genesis.hash, m.member, m.share, item.point) for m in members]
        for pair in ((0, 1), (0, 2), (1, 2)):
            open_shard(public, j, unseal(key.group_key, item, combine([parts[i] for i in pair], 2)))
        with pytest.raises(ShardError):
            open_shard(public, j, unseal(key.group_key, item, parts[0].value))
    vrf = create_task_files(tmp_path / "v", genesis, chain.users[0], rounds=2, shard_size=60, detect=0.05)
    assert vrf["vrf"] and vrf["secret"] is None
    assert decode_task_message(Path(vrf["announcement"]).read_bytes()).keyholder_material == b""
    one = governance_sign(msg, chain.member_paths[0].read_bytes(), genesis, partial=True)
    assert not one.verify(genesis.keyholders, genesis.threshold)
    with pytest.raises(SigningError):
        governance_sign(msg, chain.member_paths[0].read_bytes(), genesis)     # one of two is not enough
    two = governance_sign(one, chain.member_paths[2].read_bytes(), genesis)
    assert two.verify(genesis.keyholders, genesis.threshold)


def test_a_drifting_extension_continues_from_the_newest_scheduled_shard(made) -> None:
    """Issue 21 item 4: `task extend` of a drifting task refuses to continue from anything older than its newest
    scheduled shard (a revealed shard with later ones pending, an older batch's secret); it continues once the
    newest scheduled shard is the one at hand."""
    from node.tools.cli_common import CliError
    from node.tools.cli_task import extension_start
    _, _, out = made
    public = PublicTask.decode(decode_task_message(Path(out["announcement"]).read_bytes()).package)
    secret = TaskSecret.decode(Path(out["secret"]).read_bytes())        # shards 1..3, drift 40/1000
    revealed = [{"shard_index": i, "shard_key": secret.secret.key(i).hex()} for i in (1, 2, 3)]
    with pytest.raises(CliError, match=r"1 shard\(s\) scheduled after its latest revealed one \(shard 2\)"):
        extension_start(1, {"shards_total": 3, "revealed": revealed[:2]}, public, None, None)
    world, _ = extension_start(1, {"shards_total": 3, "revealed": revealed}, public, None, None)
    assert world is not None and world.to_obj() == shard_world(public, 3, secret.secret.key(3)).to_obj()
    with pytest.raises(CliError, match="holds shards 1..3 of task 1, whose newest scheduled shard is 5"):
        extension_start(1, {"shards_total": 5, "revealed": revealed}, public, secret, None, "t1.secret")
    assert extension_start(1, {"shards_total": 3, "revealed": revealed[:1]}, public, secret, None) == \
        (secret.world, 40)
    # one revealed shard cannot show a drift: asking for one (--drift-milli) is refused all the same
    with pytest.raises(CliError, match="scheduled after its latest revealed one"):
        extension_start(1, {"shards_total": 3, "revealed": revealed[:1]}, public, None, 40)
