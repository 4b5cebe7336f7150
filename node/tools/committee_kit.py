"""A keyholder committee on loopback for tests and benchmarks: a small chain with n keyholder keys and threshold
t (dealt Shamir shares, consensus.protocol.genesis.create_committee_genesis; n = 1: a single-keyholder chain), one secret
file per member, member node processes (``python -m node run --keyholder FILE``) and an
entrant that posts entries through the API so that rounds reveal.

It starts and stops real processes and talks to them through the API only (node.tools.client.NodeClient).
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from chain.address import address_of
from chain.crypto import Keypair
from consensus.keyholder import keyholder_file, member_file
from consensus.protocol.committee import leader
from consensus.protocol.genesis import (
    Genesis,
    GenesisParams,
    create_committee_genesis,
    create_genesis,
    load_genesis,
)
from consensus.protocol.messages import make_entry
from ml.task import synthetic
from node.tools.client import ApiCallError, NodeClient
from node.tools.testing import MINER_BALANCE, seeded_keypair


@dataclass(frozen=True)
class CommitteeChain:
    genesis_path: Path
    genesis: Genesis
    member_paths: tuple[Path, ...]        # keyholder-1.secret … in genesis keyholder order
    member_keys: tuple[Keypair, ...]      # idem
    entrants: tuple[Keypair, ...]


def make_committee_chain(directory: Path, *, n: int = 3, t: int = 2, rounds: int = 40, shard_size: int = 60,
                         entry_window_s: int = 1, opening_window_s: int = 1, n_entrants: int = 2,
                         chain_id: str = "popchain-committee") -> CommitteeChain:
    directory.mkdir(parents=True, exist_ok=True)
    keys = sorted((seeded_keypair(f"{chain_id}/member{i}") for i in range(n)), key=lambda k: k.public)
    entrants = tuple(seeded_keypair(f"{chain_id}/entrant{i}") for i in range(n_entrants))
    data = synthetic(b"popchain-committee-kit-seed", n_samples=rounds * shard_size + 400, n_features=8,
                     n_informative=4, n_classes=2)
    params = GenesisParams(entry_window_s=entry_window_s, opening_window_s=opening_window_s)
    kw = dict(chain_id=chain_id, rounds=rounds, shard_size=shard_size,
              allocations=[(address_of(k.public), MINER_BALANCE) for k in entrants], params=params,
              timestamp=int(time.time()) - 10, n_train=400, seed=b"popchain-committee-split")
    if n == 1:    # the single-keyholder baseline: a version-1 genesis and one keyholder.secret
        genesis, secret = create_genesis(data, keyholder_pubkeys=[keys[0].public], **kw)  # type: ignore[arg-type]
        files = [keyholder_file(secret, [keys[0]])]
    else:         # a dealt t-of-n committee: genesis carries the share commitments, member i its shares
        genesis, dealing = create_committee_genesis(data, keyholder_pubkeys=[k.public for k in keys],
                                                    threshold=t, **kw)  # type: ignore[arg-type]
        files = [member_file(genesis.hash, i + 1, k, n, t, [dealing.batches[i]]) for i, k in enumerate(keys)]
    genesis_path = directory / "genesis.bin"
    genesis_path.write_bytes(genesis.encode())
    paths = []
    for i, data_bytes in enumerate(files):
        path = directory / f"keyholder-{i + 1}.secret"
        path.write_bytes(data_bytes)
        os.chmod(path, 0o600)
        paths.append(path)
    return CommitteeChain(genesis_path, load_genesis(genesis.encode()), tuple(paths), tuple(keys), entrants)


@dataclass
class Entrant:
    """Enters every open round with each entrant key (a header hash only: no block follows, rounds are void)."""
    client: NodeClient
    chain: CommitteeChain
    entered: set[int] = field(default_factory=set)
    opened_at: dict[int, float] = field(default_factory=dict)     # round -> when this entrant saw it open

    async def once(self) -> dict:
        status = await self.client.status()
        r = status["open_round"]
        if r and r not in self.entered:
            self.entered.add(r)
            self.opened_at[r] = time.perf_counter()
            info = await self.client.round(r)
            anchor = bytes.fromhex(info["anchor"])
            for k in self.chain.entrants:
                entry = make_entry(k, self.chain.genesis.chain_id, r, anchor, hashlib.sha256(os.urandom(16)).digest())
                try:
                    await self.client.send_entry(entry.encode())
                except ApiCallError:
                    pass
        return status

    async def until(self, predicate, timeout: float = 120.0, poll: float = 0.05):
        async with asyncio.timeout(timeout):
            while True:
                status = await self.once()
                value = await predicate(status)
                if value:
                    return value
                await asyncio.sleep(poll)


def beacon_leader(chain: CommitteeChain, r: int, attempt: int = 0) -> int:
    """Index (0-based, genesis order) of the member that proposes round r's notice/beacon at ``attempt``."""
    return [k.public for k in chain.member_keys].index(leader(chain.genesis.keyholders, r, attempt))


def kill(proc) -> None:
    """SIGKILL a benchmarks._nodeproc.NodeProc (no clean shutdown: a crash)."""
    if proc.alive():
        proc.proc.send_signal(signal.SIGKILL)
        proc.proc.wait()
