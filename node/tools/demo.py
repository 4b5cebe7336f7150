"""``popchain demo``: a whole local network in one command, on loopback only.

Creates a fresh genesis on the default (synthetic) task — with 3+ nodes for a 2-of-3 keyholder committee whose
key the three keyholders generate together first (``popchain keyholder dkg`` processes over a ceremony board:
nobody, the demo included, ever holds the committee's secret) — starts K node processes with separate datadirs
(nodes 0-2 are the keyholders; with fewer nodes node 0 is a single trusted keyholder), starts miners with different model families as separate ``popchain miner run`` processes,
sends wallet transfers between two demo users, and prints one table row per round as the keyholder closes it.
Every child runs in its own process group and is stopped (SIGTERM, then SIGKILL) on exit or Ctrl-C, unless
``--keep`` asks to leave the network running.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chain.address import address_of, encode_address
from chain.crypto import Keypair
from chain.tx import make_transfer
from chain.wallet import Wallet
from consensus.protocol.genesis import GenesisParams, load_genesis
from node.datadir import read_ports
from node.tools.client import ApiCallError, NodeClient
from node.tools.genesis_setup import (
    GENESIS_FILE,
    HOLDOUT_FILE,
    KEYHOLDER_FILE,
    create_genesis_files,
)

MINER_FAMILIES = ("forest", "mlp", "linear")
FUNDS = 10**12
DEMO_PASSWORD = "popchain-demo"
WALLET_KDF = {"opslimit": 2, "memlimit": 8 * 2**20}   # demo wallets: throwaway keys, fast to open
# demo sizing: shards that detect +2 pp at 80 % power (3,264 generated rows each, the exact sign test over E = 16
# entries): a quarter of the default +1 pp shards, so miners retrain on the growing revealed data within the short
# demo windows, and still enough rows that a real improvement is crowned (the first one is large: the initial
# champion is a depth-2 tree)
DEMO_DETECT = 0.02
DEMO_ROUNDS = 100


@dataclass
class Child:
    name: str
    proc: subprocess.Popen
    log: Path


@dataclass
class DemoNetwork:
    workdir: Path
    n_nodes: int
    children: list[Child] = field(default_factory=list)
    api_urls: list[str] = field(default_factory=list)
    p2p_ports: list[int] = field(default_factory=list)

    def spawn(self, name: str, argv: list[str]) -> Child:
        log = self.workdir / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, POPCHAIN_PASSWORD=DEMO_PASSWORD, PYTHONUNBUFFERED="1")
        with log.open("ab") as fh:
            proc = subprocess.Popen([sys.executable, *argv], stdout=fh, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        child = Child(name, proc, log)
        self.children.append(child)
        return child

    async def start_node(self, i: int, genesis: Path, keyholder: Path | None) -> None:
        datadir = self.workdir / f"node{i}"
        argv = ["-m", "node", "run", "--datadir", str(datadir), "--genesis", str(genesis), "--port", "0",
                "--api-port", "0", "--log-level", "INFO"]
        if keyholder is not None:
            argv += ["--keyholder", str(keyholder)]
        if self.p2p_ports:
            argv += ["--peer", f"127.0.0.1:{self.p2p_ports[-1]}"]    # a line: node i peers with node i-1
        child = self.spawn(f"node{i}", argv)
        async with asyncio.timeout(60):
            while (ports := read_ports(datadir)) is None or child.proc.poll() is not None:
                if child.proc.poll() is not None:
                    raise RuntimeError(f"node{i} exited with {child.proc.returncode}; see {child.log}")
                await asyncio.sleep(0.05)
        self.p2p_ports.append(ports["p2p"])
        self.api_urls.append(f"http://127.0.0.1:{ports['api']}")

    def stop_all(self, timeout: float = 15.0) -> None:
        for child in self.children:
            if child.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in self.children:
            try:
                child.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.proc.pid, signal.SIGKILL)
                child.proc.wait()


class Table:
    # b (challenger right, champion wrong) and c (the reverse) side by side with bar, the least b that crowned
    # outcome: crowned (a certified better model), plain (a block that confirms transfers and crowns nothing,
    # issue 21) or void (no block)
    # acc fwd: the FORWARD holdout (issue 21) — the champion that stood when the round opened, scored on the
    # round's shard: rows it never saw, drawn after it was crowned (on a drifting task, the concept it now faces);
    # bayes gap: the Bayes-optimal accuracy of the round's shard (the generator knows its concept, ml.bayes)
    # minus acc fwd, in percentage points: the progress left to make; acc test: the champion after the round on
    # the held-out split written with genesis (the task's start)
    COLUMNS = (("round", 5), ("outcome", 7), ("miner", 7), ("b", 5), ("c", 5), ("bar", 5), ("acc fwd", 7),
               ("bayes gap", 9), ("acc test", 8), ("height", 6), ("txs in block", 12))

    def header(self) -> str:
        head = "  ".join(name.rjust(w) for name, w in self.COLUMNS)
        return head + "\n" + "  ".join("-" * w for _, w in self.COLUMNS)

    def row(self, *cells: object) -> str:
        return "  ".join(str(c).rjust(w) for c, (_, w) in zip(cells, self.COLUMNS))


async def _send_transfers(client: NodeClient, chain_id: str, users: list[Keypair], rng: random.Random) -> list[str]:
    """A few transfers between the demo users; returns the txids the node accepted."""
    sent: list[str] = []
    for _ in range(rng.randint(1, 3)):
        sender, recipient = rng.sample(users, 2)
        account = await client.account(encode_address(address_of(sender.public)))
        tx = make_transfer(sender, chain_id, address_of(recipient.public), rng.randint(1, 10**6), 1_000,
                           account["next_nonce"], b"demo")
        with contextlib.suppress(ApiCallError):
            await client.send_tx(tx.encode())
            sent.append(tx.txid.hex())
    return sent


async def _demo(workdir: Path, rounds: int, n_nodes: int, keep: bool) -> int:
    from ml.model import decode_model
    from ml.score import score
    from ml.shards import open_shard
    from ml.task import read_feature_csv

    print(f"popchain demo: {n_nodes} nodes, {len(MINER_FAMILIES)} miners, {rounds} rounds; working in {workdir}")
    miners = [Keypair.generate() for _ in MINER_FAMILIES]
    users = [Keypair.generate() for _ in range(2)]
    keyholder = Keypair.generate()
    names = {address_of(k.public): f"{fam}-miner" for k, fam in zip(miners, MINER_FAMILIES)}
    chain_dir = workdir / "chain"
    params = GenesisParams(entry_window_s=3, opening_window_s=4)
    net = DemoNetwork(workdir, n_nodes)
    # with 3+ nodes the keyholder is a 2-of-3 committee, one member per node (nodes 0-2, PROTOCOL §3.10); its
    # key comes from the three keyholders' own key generation (§3.14)
    committee = n_nodes >= 3
    who: dict[str, Any] = {"keyholder": keyholder}
    members: list[Path] = []
    if committee:
        print("keyholders: generating the committee's key together (3 'popchain keyholder dkg' processes over a "
              "ceremony board) ...", flush=True)
        try:
            committee_file, members = await _ceremony(net, workdir)
        except BaseException:
            net.stop_all()
            raise
        from consensus.protocol.dkg import decode_committee_key
        who = {"committee": decode_committee_key(committee_file.read_bytes())}
    print(f"creating genesis ({'VRF-generated' if committee else 'stationary'} synthetic task, {DEMO_ROUNDS} hidden "
          f"shards sized to detect +{DEMO_DETECT:.0%}) ...", flush=True)
    info = await asyncio.to_thread(
        create_genesis_files, chain_dir, allocations=[(address_of(k.public), FUNDS) for k in miners + users],
        params=params, chain_id="popchain-demo", detect=DEMO_DETECT, rounds=DEMO_ROUNDS, **who)

    def secret_of(i: int) -> Path | None:
        if committee:
            return members[i] if i < 3 else None
        return chain_dir / KEYHOLDER_FILE if i == 0 else None
    genesis = load_genesis((chain_dir / GENESIS_FILE).read_bytes())
    X_test, y_test = read_feature_csv(chain_dir / HOLDOUT_FILE, genesis.task.spec)
    assert y_test is not None, "the held-out split written with the genesis has labels"
    spec, caps = genesis.task.spec, genesis.model_caps
    print(f"genesis {info['genesis_hash'][:16]}…  chain id {genesis.chain_id}  shards of {info['shard_size']:,} rows "
          f"(detect +{info['detectable']:.2%} at 80 % power)")

    try:
        # the keyholder node starts last, once the miners have trained their first candidates, so that round 1
        # is not played before anyone is ready; the others form a line, the keyholder joins at its start
        order = list(range(1, n_nodes)) + [0]
        urls: dict[int, str] = {}
        miner_children: list[Child] = []
        for n, i in enumerate(order):
            if i == 0 and n_nodes > 1:
                await _wait_ready(miner_children)
            await net.start_node(i, chain_dir / GENESIS_FILE, secret_of(i))
            urls[i] = net.api_urls[-1]
            print(f"node{i} up: explorer {urls[i]}/  API {urls[i]}/api  peer port {net.p2p_ports[-1]}"
                  + (f"  (keyholder {i + 1} of a 2-of-3 committee)" if committee and i < 3
                     else "  (keyholder)" if secret_of(i) else ""), flush=True)
            if n == len(order) - 2 or n_nodes == 1:
                miner_children = _start_miners(net, workdir, miners, list(urls.values()))
        net.api_urls = [urls[i] for i in range(n_nodes)]
        async with NodeClient(net.api_urls[0]) as client:
            return await _watch(client, net, genesis, rounds, users, names, X_test, y_test, keep,
                                lambda m: score(decode_model(m, spec, caps), X_test, y_test).accuracy,
                                lambda r, key, m: score(decode_model(m, spec, caps),
                                                        *_xy(open_shard(genesis.task, r, key))).accuracy,
                                genesis_drifts=bool(info.get("drift_milli")))
    finally:
        if keep:
            print("\n--keep: the network keeps running; watch it live in a browser: "
                  + "  ".join(f"{u}/leaderboard" for u in net.api_urls))
            print("Stop it with:\n  kill "
                  + " ".join(f"-- -{c.proc.pid}" for c in net.children if c.proc.poll() is None))
        else:
            print("\nstopping the network ...", flush=True)
            net.stop_all()
            print(f"stopped. Logs and datadirs are in {workdir}")


async def _ceremony(net: DemoNetwork, workdir: Path, n: int = 3, t: int = 2) -> tuple[Path, list[Path]]:
    """The keyholders' key generation as real processes: each keyholder's key (``keyholder new``), a board, and
    ``keyholder dkg`` per keyholder. Returns (the public committee key, each keyholder's member file)."""
    from consensus.keyholder import key_file
    kdir = workdir / "keyholders"
    kdir.mkdir(parents=True, exist_ok=True)
    pubkeys = []
    for i in range(1, n + 1):
        kp = Keypair.generate()
        path = kdir / f"keyholder{i}.key"
        path.write_bytes(key_file(kp))
        os.chmod(path, 0o600)
        pubkeys.append(kp.public)
    keys = ",".join(k.hex() for k in pubkeys)
    board = net.spawn("dkg-board", ["-m", "cli", "keyholder", "dkg-board", "--keyholders", keys, "--threshold",
                                    str(t), "--listen", "127.0.0.1:0", "--linger", "5", "--json"])
    async with asyncio.timeout(60):
        while b'"url"' not in board.log.read_bytes():
            if board.proc.poll() is not None:
                raise RuntimeError(f"the ceremony board exited; see {board.log}")
            await asyncio.sleep(0.05)
    import json
    text = board.log.read_text()
    url = json.loads(text[text.index("{"):text.index("}") + 1])["url"]
    clients = [net.spawn(f"keyholder{i}-dkg", ["-m", "cli", "keyholder", "dkg", "--key", str(kdir / f"keyholder{i}.key"),
                                               "--board", url, "--keyholders", keys, "--threshold", str(t),
                                               "--out", str(kdir / f"keyholder{i}"), "--timeout", "120"])
               for i in range(1, n + 1)]
    async with asyncio.timeout(180):
        while any(c.proc.poll() is None for c in clients):
            await asyncio.sleep(0.1)
    for c in clients:
        if c.proc.returncode != 0:
            raise RuntimeError(f"{c.name} failed; see {c.log}")
    print(f"committee key generated (a 2-of-3 committee; group key in {kdir / 'keyholder1' / 'committee.key'})",
          flush=True)
    return kdir / "keyholder1" / "committee.key", [kdir / f"keyholder{i}" / "keyholder.secret" for i in range(1, n + 1)]


def _start_miners(net: DemoNetwork, workdir: Path, miners: list[Keypair], urls: list[str]) -> list[Child]:
    children = []
    for i, (kp, family) in enumerate(zip(miners, MINER_FAMILIES)):
        wallet_path = workdir / f"{family}-miner.popkeys"
        wallet = Wallet.create(wallet_path, DEMO_PASSWORD, **WALLET_KDF)
        wallet.import_seed(kp.seed, family)
        children.append(net.spawn(f"{family}-miner", ["-m", "cli", "miner", "run", "--node", urls[i % len(urls)],
                                                      "--wallet", str(wallet_path), "--model", family]))
    print(f"miners started: {', '.join(f'{f}-miner' for f in MINER_FAMILIES)} (training first candidates ...)",
          flush=True)
    return children


async def _wait_ready(children: list[Child], timeout: float = 120.0) -> None:
    async with asyncio.timeout(timeout):
        for child in children:
            while b"ready:" not in child.log.read_bytes():
                if child.proc.poll() is not None:
                    raise RuntimeError(f"{child.name} exited with {child.proc.returncode}; see {child.log}")
                await asyncio.sleep(0.1)


def _xy(dataset):
    return dataset.X, dataset.y


async def _watch(client: NodeClient, net: DemoNetwork, genesis, rounds: int, users, names, X_test, y_test,
                 keep: bool, test_acc, shard_acc, genesis_drifts: bool = False) -> int:
    from ml.bayes import shard_bayes_accuracy

    def bayes_of(r: int, key: bytes) -> float:
        return shard_bayes_accuracy(genesis.task, r, key, rows=100_000)
    table = Table()
    print(table.header(), flush=True)
    rng = random.Random(7)
    champion_model = genesis.block.model
    baseline = test_acc(champion_model)
    confirmed = crowned = plain = 0   # confirmed: running total for the summary; the table shows each block's own
    pending: dict[str, int] = {}      # txid -> the round it arrived in (issue 21: how long transfers wait)
    waits: list[int] = []
    last_shard: tuple[int, bytes] | None = None
    reported = transfers_round = 0
    async with asyncio.timeout(max(120.0, rounds * 60.0)):
        while reported < rounds:
            status = await client.status()
            if status["open_round"] and status["open_round"] != transfers_round:
                transfers_round = status["open_round"]
                for txid in await _send_transfers(client, genesis.chain_id, users, rng):
                    pending[txid] = transfers_round
            next_round = reported + 1
            info = await client.round(next_round)
            if info.get("status") not in ("crowned", "plain", "void"):
                await asyncio.sleep(0.25)
                continue
            reported = next_round
            verdict = info.get("verdict")
            key = bytes.fromhex(info["shard_key"])
            standing = champion_model          # the forward holdout scores the champion the round started with
            in_block: int | str = "-"
            if info.get("block"):
                block = await client.block(info["block"])
                in_block = len(block["txs"])
                confirmed += in_block
                for t in block["txs"]:
                    if t["txid"] in pending:
                        waits.append(next_round - pending.pop(t["txid"]))
                who = names.get(address_of(bytes.fromhex(block["header"]["miner"])), "?").replace("-miner", "")
            if verdict:
                crowned += 1
                champion_model = await client.model(verdict["model_hash"])
                cells = (next_round, "crowned", who, verdict["b"], verdict["c"], verdict["bar"])
            elif info.get("block"):
                plain += 1
                cells = (next_round, "plain", who, "-", "-", "-")
            else:
                cells = (next_round, "void", "-", "-", "-", "-")
            acc_shard = await asyncio.to_thread(shard_acc, next_round, key, standing)
            limit = await asyncio.to_thread(bayes_of, next_round, key)
            last_shard = (next_round, key)
            acc_test = await asyncio.to_thread(test_acc, champion_model)
            print(table.row(*cells, f"{acc_shard:.3f}", f"{(limit - acc_shard) * 100:.1f} pp", f"{acc_test:.3f}",
                            status["height"], in_block), flush=True)
    final = await client.status()
    tips = set()
    for url in net.api_urls:
        async with NodeClient(url) as c:
            tips.add((await c.status())["tip"])
    print(f"\nsummary: {rounds} rounds, {crowned} crowned, {plain} plain, {rounds - crowned - plain} void; height "
          f"{final['height']}; {confirmed} transfers confirmed"
          + (f", the slowest after {max(waits)} round(s) (median {sorted(waits)[len(waits) // 2]})" if waits else "")
          + (f"; {len(pending)} still pending" if pending else ""))
    if last_shard is not None:   # the current concept: on a drifting task the start's test split is not it
        r, key = last_shard
        now_acc, was_acc = await asyncio.gather(asyncio.to_thread(shard_acc, r, key, champion_model),
                                                asyncio.to_thread(shard_acc, r, key, genesis.block.model))
        limit = await asyncio.to_thread(bayes_of, r, key)
        print(f"champion accuracy on the latest shard (round {r}, the current concept): {now_acc:.3f} "
              f"(the genesis champion on it: {was_acc:.3f})")
        print(f"Bayes-optimal accuracy of that concept (the physical limit, known to the generator): {limit:.3f}; "
              f"the champion's gap to it: {(limit - now_acc) * 100:.1f} pp (the genesis champion's: "
              f"{(limit - was_acc) * 100:.1f} pp)")
    print(f"champion accuracy on the untouched test split: {test_acc(champion_model):.3f} "
          f"(genesis baseline {baseline:.3f})"
          + ("; drawn from the task's start, which the drifting concept has moved away from"
             if genesis_drifts else ""))
    print(f"nodes agree on the tip: {'yes' if len(tips) == 1 else 'not yet (still syncing)'}")
    print("node APIs: " + "  ".join(net.api_urls))
    print("explorers (leaderboard, rounds, blocks; live): " + "  ".join(f"{u}/" for u in net.api_urls))
    if keep:    # without --keep the network stops right after this summary: a "try:" hint would point at nothing
        print(f"try: popchain chain info --node {net.api_urls[0]}   |   popchain model champion --node "
              f"{net.api_urls[0]}")
    return 0


def run_demo(*, rounds: int = 10, nodes: int = 3, keep: bool = False, workdir: str | None = None) -> int:
    if not 1 <= nodes <= 16:
        raise ValueError("--nodes must be between 1 and 16")
    if not 1 <= rounds <= 100:
        raise ValueError("--rounds must be between 1 and 100")
    path = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="popchain-demo-"))
    path.mkdir(parents=True, exist_ok=True)
    try:
        return asyncio.run(_demo(path, rounds, nodes, keep))
    except KeyboardInterrupt:
        print("\ninterrupted: network stopped", file=sys.stderr)
        return 130
