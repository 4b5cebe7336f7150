"""A task owner's own CSV (issue 22 item 2, issue 20 item 19): `genesis create --task csv:adult.csv` works as the
file is published, the default split leaves miners enough public rows and several rounds, `--public-rows` is
honoured, small sizings are warned about in words, and a genesis over the payload cap is explained with its sizes."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.protocol.genesis import GenesisParams, load_genesis
from ml.errors import TaskError
from ml.task import load_builtin, read_feature_csv
from node.tools import sizing
from node.tools.genesis_setup import size_task
from tests.test_cli_e2e import assert_one_line_error, popchain

ALLOC = "pop1akn5hzhv924nluzxhp48h7wuuuajkkxsglxtyj=1000000"
ADULT = Path("/work/shared/data/adult.csv")


@pytest.mark.skipif(not ADULT.exists(), reason="the shared UCI Adult file is not on this machine")
def test_uci_adult_as_published_makes_a_three_round_chain(tmp_path: Path) -> None:
    proc = popchain("genesis", "create", "--task", f"csv:{ADULT}", "--label-column", "income", "--alloc", ALLOC,
                    "--out", "chain", "--json", cwd=tmp_path, timeout=300)
    out = json.loads(proc.stdout)
    assert out["rounds"] == 3 and out["n_train"] >= 10_000 and out["warnings"] == []
    assert out["n_train"] + out["rounds"] * out["shard_size"] + out["n_holdout"] <= 48_842
    assert any(c.startswith("workclass: categorical") for c in out["columns"])
    genesis = load_genesis((tmp_path / "chain" / "genesis.bin").read_bytes())
    assert genesis.task.spec.encoding is not None and out["genesis_bytes"] < 8 << 20
    with (tmp_path / "chain" / "holdout.csv").open() as fh:
        header = next(csv.reader(fh))
    assert header[0] == "age" and header[-1] == "income"
    X, y = read_feature_csv(tmp_path / "chain" / "holdout.csv", genesis.task.spec)
    assert y is not None and len(y) == out["n_holdout"] and X.shape[1] == 14
    assert sizing.plan_rows(m=16, available=48_842 - 6_105, public=0.6, max_shard=100_000).public_rows == 25_642


def test_a_numeric_looking_column_can_be_categorical(tmp_path: Path) -> None:
    rows = ["zip,size,label"] + [f"{75000 + i % 7},{i % 13},{'ab'[i % 2]}" for i in range(3_000)]
    (tmp_path / "z.csv").write_text("\n".join(rows) + "\n")
    out = json.loads(popchain("genesis", "create", "--task", f"csv:{tmp_path / 'z.csv'}", "--categorical", "zip",
                              "--public-rows", "1000", "--shard-size", "400", "--alloc", ALLOC, "--out", "g",
                              "--json", cwd=tmp_path).stdout)
    assert out["columns"][0].startswith("zip: categorical, 7 categories") and out["n_train"] == 1_000
    assert out["columns"][1].startswith("size: numeric")


def test_small_sizings_are_warned_about_in_words(tmp_path: Path) -> None:
    # issue 20 item 19: a small `--detect` on digits leaves 1 round and a few hundred public rows (0.04 since the
    # crowning margin of issue 18: 0.03 now needs more rows than digits has, a one-line error)
    proc = popchain("genesis", "create", "--task", "digits", "--detect", "0.04", "--alloc", ALLOC, "--out", "g",
                    cwd=tmp_path)
    assert "only 343 public training rows" in proc.stderr and "only 1 round" in proc.stderr
    assert "1 rounds x 1230 hidden samples, 343 public training rows" in proc.stdout


def test_task_create_warns_like_genesis_create(tmp_path: Path) -> None:
    from node.tools.task_setup import create_task_files
    from node.tools.testing import make_test_chain
    chain = make_test_chain(tmp_path / "c", rounds=2, n_miners=1, n_users=1)
    out = create_task_files(tmp_path / "t", chain.genesis, chain.users[0], task="digits", detect=0.04)
    assert out["rounds"] == 1 and any("public training rows" in w for w in out["warnings"])
    assert any("only 1 round" in w for w in out["warnings"])


def test_a_wide_task_fits_its_announcement_with_its_rows_in_blobs(tmp_path: Path) -> None:
    """13,000 rows x 70 wide columns: ~3.1 MiB of rows, which used to exceed the announcement's 3 MiB package
    cap (issue 20 explained it in words). The hidden shards and the public rows are blobs now (PROTOCOL §3.15):
    the announcement stays within 1 MiB and the rows go beside it."""
    from node.tools.task_setup import create_task_files
    from node.tools.testing import make_test_chain
    rng = np.random.default_rng(0)
    big = tmp_path / "wide.csv"
    with big.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([f"c{i}" for i in range(70)] + ["y"])
        for i in range(13_000):
            w.writerow([*rng.integers(0, 1 << 20, 70), "ab"[i % 2]])
    chain = make_test_chain(tmp_path / "c", rounds=2, n_miners=1, n_users=1)
    out = create_task_files(tmp_path / "t", chain.genesis, chain.users[0], task=f"csv:{big}", label_column="y")
    assert out["message_bytes"] <= 1 << 20 < out["blob_bytes"]
    assert out["blobs"] == out["rounds"] + 1 and (tmp_path / "t" / "task.announce").exists()


@pytest.mark.parametrize("argv,fragment", [
    (["--public-rows", "0"], "--public-rows 0"),
    (["--public-rows", "1.5"], "a row count"),
    (["--public-rows", "1600"], "hidden shards need some of them"),
    (["--public-rows", "1500", "--shard-size", "200", "--rounds", "2"], "do not fit"),
])
def test_public_rows_are_checked(tmp_path: Path, argv, fragment) -> None:
    proc = popchain("genesis", "create", "--task", "digits", "--alloc", ALLOC, "--out", "g", *argv, cwd=tmp_path,
                    check=False)
    assert_one_line_error(proc, fragment)


@settings(max_examples=40, deadline=None)
@given(available=st.integers(200, 300_000), public=st.one_of(st.none(), st.floats(0.05, 0.95),
                                                            st.integers(1, 299_000)),
       rounds=st.one_of(st.none(), st.integers(1, 12)), shard=st.one_of(st.none(), st.integers(9, 40_000)))
def test_the_split_never_promises_rows_it_does_not_have(available, public, rounds, shard):
    try:
        s = sizing.plan_rows(m=16, available=available, public=public, rounds=rounds, shard_size=shard,
                             max_shard=min(100_000, available))
    except sizing.SizingError:
        return
    assert s.rounds >= 1 and s.shard_size >= sizing.min_disagreement(16)
    assert s.public_rows is not None and s.public_rows >= 1
    assert s.public_rows + s.rounds * s.shard_size <= available
    if rounds is not None:
        assert s.rounds == rounds
    if shard is not None:
        assert s.shard_size == shard
    if public is None and rounds is None and shard is None:
        assert s.detectable is not None and s.detectable <= sizing.MAX_AUTO_DETECT


def test_the_default_split_of_a_dataset():
    s, n_test = size_task("digits", load_builtin("digits"), GenesisParams(), detect=None, rounds=None,
                          shard_size=None)
    assert n_test == 224 and (s.rounds, s.shard_size, s.public_rows) == (1, 944, 629)   # 3 or 2 shards: > +5 pp
    mid = sizing.plan_rows(m=16, available=9_000, max_shard=100_000)    # too few rows for 3 +1 pp shards
    assert (mid.rounds, mid.shard_size, mid.public_rows) == (3, 1_800, 3_600) and mid.detectable < 0.03
    big = sizing.plan_rows(m=16, available=400_000, max_shard=100_000)   # plenty: +1 pp shards, 40 % public
    assert big.shard_size == sizing.rows_for(0.01, 16) and big.rounds == 240_000 // big.shard_size
    with pytest.raises(TaskError, match="choose --detect or --shard-size"):
        size_task("breast_cancer", load_builtin("breast_cancer"), GenesisParams(), detect=None, rounds=None,
                  shard_size=None)
