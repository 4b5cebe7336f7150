"""Keyholding figures of issue 24 (PROTOCOL §3.14, §3.9), each beside a baseline from the same run:

- dkg_time_s: the keyholders' key generation as real processes on loopback — a ``popchain keyholder dkg-board``
  and n ``popchain keyholder dkg`` processes — for n = 3, 5 and 7 (quick: 3 and 5), the protocol time each
  keyholder reports (join → signed committee key, slowest keyholder) and the wall time including process
  start; value: n = 7 (quick: 5). Baseline: the same ceremony with every participant in one process (no
  network, no process start), same n.
- share_verify_us: checking one released share (its Chaum–Pedersen proof against the member's public share
  key); baseline: one Ed25519 signature verification (libsodium), same run.
- dealer_open_before_reveal: every shard of a 20-round committee chain (a VRF-generated task, and a data task
  whose keys its sponsor sealed), tried with everything in the genesis creator's files and in any t − 1 = 1
  member's files (every 32-byte window of every file, and the member's share used as if it were the
  committee's): how many shards open before their beacon. Goal 0. Baseline: the same try on the
  trusted-keyholder chain (version 1) of the same task, whose creator writes keyholder.secret.
- sponsor_peek_gain: a sponsor announces a data task with a bounty and mines it with a key of its own (not its
  sponsor key: that one may not enter) and a model trained on the hidden rows of the very shard being played,
  against 2 honest miners trained on the public and revealed rows, for >= 10 rounds (real Engine and
  keyholder, in process): its net grains gained (sponsor + its miner key, bounty back included) / block
  reward. Goal <= 0. Baseline: what the same crownings were worth before this rule (each minted a block
  reward), same run.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks._nodeproc import ROOT

if TYPE_CHECKING:
    from consensus.protocol.genesis import Genesis

ED_VERIFY_SAMPLES = 2000


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POPCHAIN_")}
    env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    return env


def _cli(args: list[str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as fh:
        return subprocess.Popen([sys.executable, "-m", "cli", *args], cwd=cwd, stdout=fh, stderr=subprocess.STDOUT,
                                env=_env(), start_new_session=True)


# ---------------------------------------------------------------- dkg_time_s


def _ceremony(root: Path, n: int) -> tuple[float, float]:
    """(slowest keyholder's protocol seconds, wall seconds from launching the clients to the last one done)."""
    from chain.crypto import Keypair
    from consensus.keyholder import key_file, write_secret
    root.mkdir(parents=True)
    keys = []
    for i in range(n):
        kp = Keypair.generate()
        write_secret(root / f"k{i}.key", key_file(kp))
        keys.append(kp.public.hex())
    listed = ",".join(keys)
    t = n // 2 + 1
    board = _cli(["keyholder", "dkg-board", "--keyholders", listed, "--threshold", str(t), "--listen", "127.0.0.1:0",
                  "--linger", "2", "--json"], root, root / "board.log")
    try:
        deadline = time.monotonic() + 120
        while b'"url"' not in (root / "board.log").read_bytes():
            if board.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dkg board did not start: {(root / 'board.log').read_text()}")
            time.sleep(0.02)
        text = (root / "board.log").read_text()
        url = json.loads(text[text.index("{"):text.rindex("}") + 1])["url"]
        started = time.perf_counter()
        clients = [_cli(["keyholder", "dkg", "--key", f"k{i}.key", "--board", url, "--keyholders", listed,
                         "--threshold", str(t), "--out", f"m{i}", "--json", "--timeout", "300"], root,
                        root / f"dkg{i}.log") for i in range(n)]
        for c in clients:
            c.wait(600)
        wall = time.perf_counter() - started
        if any(c.returncode for c in clients):
            raise RuntimeError(f"a keyholder failed: {[(root / f'dkg{i}.log').read_text()[-400:] for i in range(n)]}")
        protocol = max(json.loads((root / f"dkg{i}.log").read_text())["seconds"] for i in range(n))
        return protocol, wall
    finally:
        if board.poll() is None:
            board.terminate()
            board.wait(30)


def _in_process(n: int) -> float:
    from chain.crypto import Keypair
    from node.tools.committee_kit import local_committee
    kps = [Keypair.generate() for _ in range(n)]
    started = time.perf_counter()
    local_committee(kps, n // 2 + 1)
    return time.perf_counter() - started


def dkg_figure(quick: bool) -> dict[str, Any]:
    sizes = (3, 5) if quick else (3, 5, 7)
    got: dict[int, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="popchain-bench-dkg-") as tmp:
        for n in sizes:
            got[n] = _ceremony(Path(tmp) / f"n{n}", n)
    base = {n: _in_process(n) for n in sizes}
    top = sizes[-1]
    detail = "; ".join(f"n={n}: {got[n][0]:.2f} s protocol, {got[n][1]:.2f} s wall incl. process start, "
                       f"in-process {base[n]:.2f} s" for n in sizes)
    return {"name": "dkg_time_s", "value": got[top][0], "unit": "s", "baseline": base[top],
            "ratio": got[top][0] / base[top], "goal": f"report (real processes over a board on loopback): {detail}"}


# ---------------------------------------------------------------- share_verify_us


def share_verify_figure(quick: bool) -> dict[str, Any]:
    from chain.crypto import Keypair, verify_sig
    from consensus.protocol.release import check_partial, make_partial, vrf_point
    from node.tools.committee_kit import local_committee, member_secrets
    kps = [Keypair.generate() for _ in range(3)]
    key, files = local_committee(kps, 2)
    secret = member_secrets(files)[0]
    g = b"G" * 32
    samples = 200 if quick else 1000
    points = [vrf_point(g, g, i) for i in range(samples)]
    partials = [make_partial(key, g, secret.member, secret.share, p) for p in points]
    key.share_key(1)                       # the public share keys are derived once per genesis
    t0 = time.perf_counter()
    for p, part in zip(points, partials):
        check_partial(key, g, p, part)
    share_us = (time.perf_counter() - t0) / samples * 1e6
    kp = Keypair.generate()
    msgs = [os.urandom(32) for _ in range(ED_VERIFY_SAMPLES)]
    sigs = [kp.sign(m) for m in msgs]
    t0 = time.perf_counter()
    for m, s in zip(msgs, sigs):
        verify_sig(kp.public, m, s)
    ed_us = (time.perf_counter() - t0) / ED_VERIFY_SAMPLES * 1e6
    return {"name": "share_verify_us", "value": share_us, "unit": "us", "baseline": ed_us, "ratio": share_us / ed_us,
            "goal": f"report: one released share (DLEQ proof, ~4 scalar products) vs one Ed25519 verify; a beacon "
                    f"carries t of them; n={samples}"}


# ---------------------------------------------------------------- dealer_open_before_reveal


def _windows(raw: bytes) -> set[bytes]:
    return {raw[i:i + 32] for i in range(len(raw) - 31)}


def dealer_open_figure(quick: bool) -> dict[str, Any]:
    from chain.address import address_of
    from chain.crypto import Keypair
    from consensus.protocol.genesis import GenesisParams, create_committee_genesis, create_genesis
    from consensus.protocol.group import mul
    from consensus.protocol.release import combine, make_partial, shard_key_of, vrf_point
    from ml.generator import world_from_seed
    from ml.shards import open_shard
    from ml.task import synthetic
    from node.tools.committee_kit import local_committee, member_secrets
    rounds = 20
    kps = sorted((Keypair.generate() for _ in range(3)), key=lambda k: k.public)
    key, files = local_committee(kps, 2)
    secrets = member_secrets(files)
    kw: dict[str, Any] = {"chain_id": "popchain-bench-peek", "rounds": rounds, "shard_size": 200,
                          "allocations": [(address_of(kps[0].public), 10**9)], "params": GenesisParams(),
                          "timestamp": 1_700_000_000}
    world = world_from_seed(b"popchain-bench-peek-world", n_features=8, n_informative=4, n_classes=2)
    data = synthetic(b"popchain-bench-peek-rows", n_samples=rounds * 200 + 600, n_features=8, n_informative=4,
                     n_classes=2)
    sponsor = Keypair.generate()
    chains = {"vrf": create_committee_genesis(world, committee=key, n_train=400, **kw),
              "data": create_committee_genesis(data, committee=key, sponsor=sponsor.public, n_train=400, **kw)}
    opened, tried = 0, 0
    for kind, g in chains.items():
        creator = [g.encode()] if kind == "vrf" else []      # a data task's creator is its sponsor: it knows its rows
        for r in range(1, rounds + 1):
            point, sealed = ((vrf_point(g.hash, g.hash, r), None) if kind == "vrf"
                             else (g.sealed[r - 1].point, g.sealed[r - 1]))
            parts = [make_partial(key, g.hash, s.member, s.share, point) for s in secrets]
            true = shard_key_of(key, point, combine(parts[:2], 2), sealed)
            open_shard(g.task, r, true)                       # two member files (t) do open it
            for s, raw in zip(secrets, files):                # any t − 1 = one member, with the creator's files
                guesses = set().union(*(_windows(b) for b in [raw, key.encode(), *creator]))
                guesses |= {shard_key_of(key, point, mul(x, point), sealed) for x in (s.share, 2 * s.share)}
                tried += 1
                opened += true in guesses     # a shard opens with its one key (SecretBox / the VRF seed) only
    # the trusted single keyholder's chain of the same generated task: its creator writes the keys itself
    g1, secret = create_genesis(world, keyholder_pubkeys=[kps[0].public], n_train=400, **kw)
    baseline = sum(1 for r in range(1, rounds + 1) if _opens_any(g1, r, _windows(secret)))
    return {"name": "dealer_open_before_reveal", "value": float(opened), "unit": "shards", "baseline": float(baseline),
            "ratio": None, "goal": f"0 (of {tried} tries: {rounds} shards x 2 task kinds x any one member of a "
                                   f"2-of-3 DKG committee, with the genesis creator's files); baseline: the "
                                   f"trusted single keyholder's creator opens {baseline} of {rounds}"}


def _opens_any(g: Genesis, r: int, keys: set[bytes]) -> bool:
    from ml.errors import ShardError
    from ml.shards import open_shard
    for k in keys:
        try:
            open_shard(g.task, r, k)
            return True
        except ShardError:
            continue
    return False


# ---------------------------------------------------------------- sponsor_peek_gain


def sponsor_figure(quick: bool) -> dict[str, Any]:
    from benchmarks.sponsor_peek import run_sponsor_peek
    res = run_sponsor_peek(rounds=10 if quick else 12)
    return {"name": "sponsor_peek_gain", "value": res.gain, "unit": "block rewards", "baseline": res.old_rule_gain,
            "ratio": None, "goal": f"<= 0: the peeking sponsor won {res.sponsor_wins} of {res.rounds} rounds "
                                   f"(honest miners {res.honest_wins}); the same wins minted "
                                   f"{res.old_rule_gain:.2f} block rewards before this rule"}


def run(quick: bool = False) -> list[dict[str, Any]]:
    return [dkg_figure(quick), share_verify_figure(quick), dealer_open_figure(quick), sponsor_figure(quick)]


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
