"""The user's value on real data (issue 22): the champion's gap to the best scikit-learn fit on UCI Adult.

real_task_gap_pp   ``popchain genesis create --task csv:adult.csv --label-column income`` with the owner's
                   default split and sizing (3 rounds of ~8,500 hidden rows, ~17,100 public rows, a 1/8 holdout),
                   a real network — the keyholder node and a peer as processes — and 3 honest miners running
                   ``popchain miner run --model auto`` as processes until the task closes. Then, on the owner's
                   holdout.csv: the best of HistGradientBoosting (categorical columns as categories),
                   RandomForest and LogisticRegression (one-hot categories, scaled numbers), each with
                   scikit-learn's defaults and trained on the public rows plus every revealed shard, minus the
                   champion's accuracy, in percentage points (goal <= 0.5). Baseline: that best fit's accuracy.
Quick mode: a stratified 8,000-row sample of the file (3 rounds of 1,400 rows, 2,800 public, 2-second windows),
the same path.

The genesis holds blob references only (a few kB): the hidden shards and the public rows are blobs the owner's
node serves (``--blob-dir``) and the other node fetches over the wire (PROTOCOL §3.15, §4.9).
`python -m benchmarks.real_task [--quick]`.
"""
from __future__ import annotations

import asyncio
import contextlib
import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._nodeproc import ROOT, NodeProc, stop_all

ADULT_CSV = Path("/work/shared/data/adult.csv")
LABEL = "income"
N_MINERS = 3
QUICK_ROWS = 8_000
FUNDS = 10**12
PASSWORD = "real-task-bench"


def _sample(src: Path, dst: Path, n: int, seed: int = 0) -> None:
    """A stratified sample of ``n`` rows of a CSV (label proportions kept), header first."""
    with src.open(newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    li = header.index(LABEL)
    rng = np.random.default_rng(seed)
    labels = np.array([r[li] for r in body])
    keep: list[int] = []
    for value in np.unique(labels):
        idx = np.flatnonzero(labels == value)
        keep += rng.choice(idx, size=round(n * len(idx) / len(body)), replace=False).tolist()
    with dst.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(body[i] for i in sorted(keep))


def _wallets(work: Path) -> tuple[list[Path], list[bytes]]:
    from chain.address import address_of
    from chain.crypto import Keypair
    from chain.wallet import Wallet
    paths, accounts = [], []
    for i in range(N_MINERS):
        kp = Keypair.generate()
        path = work / f"miner{i}.popkeys"
        w = Wallet.create(path, PASSWORD, opslimit=2, memlimit=8 * 2**20)
        w.import_seed(kp.seed, f"miner{i}")
        paths.append(path)
        accounts.append(address_of(kp.public))
    (work / "pw").write_text(PASSWORD + "\n")
    return paths, accounts


def _start_miner(work: Path, i: int, wallet: Path, url: str) -> subprocess.Popen:
    """``popchain miner run --model auto`` as a process, its output in work/miner<i>.log."""
    with (work / f"miner{i}.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "cli", "miner", "run", "--node", url, "--model", "auto", "--wallet", str(wallet),
             "--password-file", str(work / "pw"), "--retry", "30"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


async def _run_network(work: Path, chain_dir: Path, wallets: list[Path], timeout_s: float) -> dict[str, Any]:
    """Keyholder node + a peer; the miners split between them; until the task closes. Returns the final state."""
    from node.tools.client import NodeClient
    genesis, keyholder = chain_dir / "genesis.bin", chain_dir / "keyholder.secret"
    # the owner's node serves the chain's blobs (PROTOCOL §3.15); the other node fetches them from it
    kh = NodeProc(work / "kh", genesis=genesis, keyholder=keyholder,
                  extra_args=["--blob-dir", str(chain_dir / "blobs")]).start()
    nodes, miners = [kh], []
    try:
        await kh.ready()
        peer = NodeProc(work / "peer", genesis=genesis, peers=[kh.p2p_addr]).start()
        nodes.append(peer)
        await peer.ready()
        urls = [kh.api_url, peer.api_url]
        miners += [_start_miner(work, i, wallet, urls[i % 2]) for i, wallet in enumerate(wallets)]
        async with NodeClient(kh.api_url) as client:
            async with asyncio.timeout(timeout_s):
                while (await client.status())["round_phase"] != "closed":
                    await asyncio.sleep(1.0)
            champ = (await client.champion())["champion"]
            model = await client.model(champ["model_hash"])
            info = await client.task_info(0)
            revealed = [(k["shard_index"], bytes.fromhex(k["shard_key"])) for k in info["revealed"]]
            history = [(h["round"], h.get("miner_address")) for h in (await client.task_info(0)).get("history", [])]
        return {"model": model, "champion": champ, "revealed": revealed, "history": history}
    finally:
        for m in miners:
            if m.poll() is None:
                m.terminate()
        for m in miners:
            with contextlib.suppress(subprocess.TimeoutExpired):
                m.wait(20)
            if m.poll() is None:
                m.kill()
                m.wait()
        stop_all(nodes)


def sklearn_best(X: np.ndarray, y: np.ndarray, Xt: np.ndarray, yt: np.ndarray, spec: Any) -> dict[str, float]:
    """Accuracy on (Xt, yt) of scikit-learn's default HistGradientBoosting (categories as categories),
    RandomForest and LogisticRegression (one-hot categories, scaled numbers), fitted on (X, y)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    from threadpoolctl import threadpool_limits

    from ml.encoding import CategoricalColumn
    cats = [i for i, c in enumerate(spec.encoding.columns) if isinstance(c, CategoricalColumn)] \
        if spec.encoding is not None else []
    nums = [i for i in range(X.shape[1]) if i not in cats]
    models = {
        "hist_gradient_boosting": HistGradientBoostingClassifier(categorical_features=cats or None, random_state=0),
        "random_forest": RandomForestClassifier(n_jobs=1, random_state=0),
        "logistic_regression": make_pipeline(
            ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore"), cats), ("num", StandardScaler(), nums)]),
            LogisticRegression(max_iter=2000)),
    }
    out = {}
    with threadpool_limits(1):
        for name, est in models.items():
            est.fit(X.astype(np.float64), y)
            out[name] = float(np.mean(est.predict(Xt.astype(np.float64)) == yt))
    return out


def measure(quick: bool, work: Path) -> dict[str, Any]:
    from consensus.protocol.genesis import load_genesis
    from ml.blobs import BlobDir, add_blob_source
    from ml.model import decode_model
    from ml.score import score
    from ml.shards import open_shard
    from ml.task import read_feature_csv
    from node.tools.genesis_setup import create_genesis_files
    source = ADULT_CSV
    if quick:
        source = work / "adult-sample.csv"
        _sample(ADULT_CSV, source, QUICK_ROWS)
    wallets, accounts = _wallets(work)
    chain_dir = work / "chain"
    from consensus.protocol.genesis import GenesisParams
    params = GenesisParams(entry_window_s=2, opening_window_s=2) if quick else GenesisParams()
    summary = create_genesis_files(chain_dir, task=f"csv:{source}", label_column=LABEL, params=params,
                                   allocations=[(a, FUNDS) for a in accounts], chain_id="popchain-adult")
    state = asyncio.run(_run_network(work, chain_dir, wallets, timeout_s=600 if quick else 1500))
    genesis = load_genesis((chain_dir / "genesis.bin").read_bytes())
    add_blob_source(BlobDir(chain_dir / "blobs", writable=False))   # the owner's blobs: shards and public rows
    task = genesis.task.hydrate()
    spec = task.spec
    Xt, yt = read_feature_csv(chain_dir / "holdout.csv", spec)
    assert yt is not None
    champion = score(decode_model(state["model"], spec, genesis.model_caps), Xt, yt).accuracy
    shards = [open_shard(task, i, k) for i, k in state["revealed"]]
    X = np.concatenate([task.train_X] + [s.X for s in shards])
    y = np.concatenate([task.train_y] + [s.y for s in shards])
    fits = sklearn_best(X, y, Xt, yt, spec)
    best = max(fits.values())
    return {"summary": summary, "champion_acc": champion, "champion_round": state["champion"].get("round"),
            "fits": fits, "best": best, "gap_pp": 100 * (best - champion), "rows": len(y),
            "revealed": len(shards), "genesis_bytes": summary["genesis_bytes"]}


def run(quick: bool = False) -> list[dict[str, Any]]:
    if not ADULT_CSV.exists():
        raise FileNotFoundError(f"{ADULT_CSV}: the shared UCI Adult file (see its README)")
    keep = os.environ.get("POPCHAIN_BENCH_KEEP")       # a directory to keep the run's files in (debugging)
    with tempfile.TemporaryDirectory(prefix="popchain-bench-adult-") as tmp:
        work = Path(keep) if keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        m = measure(quick, work)
    s = m["summary"]
    fits = ", ".join(f"{k.split('_')[0]} {v:.4f}" for k, v in sorted(m["fits"].items(), key=lambda kv: -kv[1]))
    return [{"name": "real_task_gap_pp", "value": round(m["gap_pp"], 2), "unit": "pp",
             "baseline": round(m["best"], 4), "ratio": None,
             "goal": f"<= 0.5; champion {m['champion_acc']:.4f} (crowned round {m['champion_round']}) vs best "
                     f"sklearn fit ({fits}) on {m['rows']:,} public + revealed rows; {s['rounds']} rounds x "
                     f"{s['shard_size']:,} rows, {s['n_train']:,} public, holdout {s['n_holdout']:,}"
                     f"{', quick: 8,000-row sample' if quick else ''}; 3 miners --model auto, real processes"}]


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    for f in run(quick=quick):
        print(f)
