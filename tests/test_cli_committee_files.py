"""`popchain genesis create --keyholders N --threshold T` (issue 12, PROTOCOL §3.14): one member file per
keyholder, none holding a whole key; refused committee shapes as one-line errors; a 1-of-1 member file runs
`popchain node run --keyholder` exactly as today's keyholder.secret. Real processes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from consensus.keyholder import check_member, load_member_file
from consensus.protocol.genesis import load_genesis
from consensus.protocol.shares import combine_shares
from ml.shards import open_shard
from tests.test_cli_e2e import _get_json, assert_one_line_error, background, popchain, ports_of, wait_until

ALLOC = "pop1akn5hzhv924nluzxhp48h7wuuuajkkxsglxtyj=1000000000"
SMALL = ["--rounds", "3", "--detect", "0.1", "--alloc", ALLOC]


def test_two_of_three_files(tmp_path: Path):
    out = json.loads(popchain("genesis", "create", "--out", "c", "--keyholders", "3", "--threshold", "2", *SMALL,
                              "--json", cwd=tmp_path).stdout)
    chain = tmp_path / "c"
    assert (out["keyholders"], out["threshold"], out["committee"]) == (3, 2, True)
    assert not (chain / "keyholder.secret").exists()
    paths = [chain / f"keyholder-{i}.secret" for i in (1, 2, 3)]
    assert out["keyholder_files"] == [f"c/keyholder-{i}.secret" for i in (1, 2, 3)]
    genesis = load_genesis((chain / "genesis.bin").read_bytes())
    members = []
    for p in paths:
        assert p.stat().st_mode & 0o777 == 0o600
        m = load_member_file(p.read_bytes())
        check_member(m, genesis)
        members.append(m)
    assert [m.keypair.public.hex() for m in members] == out["keyholder_pubkeys"]
    for r, shard in enumerate(genesis.task.commitments, 1):
        key = combine_shares([members[0].share_for(shard), members[2].share_for(shard)], 2)
        open_shard(genesis.task, r, key)
    text = popchain("genesis", "create", "--out", "d", "--keyholders", "3", *SMALL, cwd=tmp_path).stdout
    assert "2-of-3" in text and "keyholder 3" in text and "keep no copy" in text   # T defaults to a majority


@pytest.mark.parametrize("argv,fragment", [
    (["--keyholders", "4", "--threshold", "2"], "not a majority"),
    (["--keyholders", "3", "--threshold", "4"], "--threshold 4"),
    (["--keyholders", "17"], "--keyholders 17"),
    (["--threshold", "2"], "--threshold needs --keyholders"),
])
def test_refused_committees_are_one_line_errors(tmp_path: Path, argv, fragment):
    proc = popchain("genesis", "create", "--out", "g", *SMALL, *argv, cwd=tmp_path, check=False)
    assert_one_line_error(proc, fragment)
    assert not (tmp_path / "g" / "genesis.bin").exists()


@pytest.mark.slow
def test_one_of_one_member_file_runs_a_node(tmp_path: Path):
    popchain("genesis", "create", "--out", "c", "--keyholders", "1", *SMALL, "--entry-window", "1", cwd=tmp_path)
    member = tmp_path / "c" / "keyholder-1.secret"
    node = ["-m", "cli", "node", "run", "--datadir", str(tmp_path / "n"), "--genesis", str(tmp_path / "c" /
            "genesis.bin"), "--keyholder", str(member), "--port", "0", "--api-port", "0"]
    with background(node, tmp_path, tmp_path / "n.log") as proc:
        url = f"http://127.0.0.1:{ports_of(tmp_path / 'n', proc)['api']}"
        # the member signs round 1's anchor notice, as a keyholder.secret does (the round then waits for entries)
        wait_until(lambda: _get_json(url + "/api/status")["round"] == 1, proc, "round 1 opened by the member")

