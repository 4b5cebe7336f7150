"""A keyholder committee on loopback for tests and benchmarks: a small chain with n keyholder keys and threshold
t (``local_committee``: the keyholders' DKG run in this one process — tests and benchmarks only, since this
process then holds every member's share; real keyholders run ``popchain keyholder dkg`` each on its own
machine), a VRF-generated genesis task (consensus.protocol.genesis.create_committee_genesis; n = 1: a
single-keyholder chain), one secret file per member, member node processes (``python -m node run --keyholder
FILE``) and an entrant that posts entries through the API so that rounds reveal.

It starts and stops real processes and talks to them through the API only (node.tools.client.NodeClient).
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chain.crypto import Keypair
from chain.encoding import unpack
from consensus.keyholder import DkgMember, MemberSecret, keyholder_file, load_member_file, member_file
from consensus.protocol.committee import leader
from consensus.protocol.dkg import CommitteeKey, Session, Transcript
from consensus.protocol.genesis import (
    Genesis,
    GenesisParams,
    create_committee_genesis,
    create_genesis,
    load_genesis,
)
from consensus.protocol.messages import make_entry
from consensus.protocol.settlement import miner_funding
from ml.generator import world_from_seed
from node.tools.client import ApiCallError, NodeClient
from node.tools.testing import MINER_BALANCE, MINER_BOND, seeded_keypair


@dataclass(frozen=True)
class CommitteeChain:
    genesis_path: Path
    genesis: Genesis
    member_paths: tuple[Path, ...]        # keyholder-1.secret … in genesis keyholder order
    member_keys: tuple[Keypair, ...]      # idem
    entrants: tuple[Keypair, ...]


def local_committee(keys: list[Keypair], t: int, label: str = "local",
                    rng: Callable[[int], bytes] = os.urandom) -> tuple[CommitteeKey, list[bytes]]:
    """The keyholders' DKG with every participant in this process (the same code the ceremony runs, messages
    passed by hand): (committee key, member file per keyholder in genesis order). TESTS AND BENCHMARKS ONLY:
    this process sees every share, as a dealer would."""
    keys = sorted(keys, key=lambda k: k.public)
    session = Session(label, tuple(k.public for k in keys), t, rng(32))
    members = [DkgMember(session, k, rng) for k in keys]
    transcript = Transcript(session)
    for step in (lambda m: m.join(), lambda m: m.deal(transcript), lambda m: m.complain(transcript)):
        for msg in [step(m) for m in members]:
            transcript.add(msg)
    signed = [m.sign(transcript) for m in members]
    sigs = {m.keypair.public: unpack(msg.body, max_size=128)[0] for m, (msg, _) in zip(members, signed)}
    key = members[0].finish(signed[0][1], sigs)
    files = []
    for m in members:
        assert m.share is not None
        files.append(member_file(key, m.me, m.keypair, m.share))
    return key, files


def member_secrets(files: list[bytes]) -> list[MemberSecret]:
    return [load_member_file(f) for f in files]


def make_committee_chain(directory: Path, *, n: int = 3, t: int = 2, rounds: int = 40, shard_size: int = 60,
                         entry_window_s: int = 1, opening_window_s: int = 1, n_entrants: int = 2,
                         chain_id: str = "popchain-committee") -> CommitteeChain:
    directory.mkdir(parents=True, exist_ok=True)
    keys = sorted((seeded_keypair(f"{chain_id}/member{i}") for i in range(n)), key=lambda k: k.public)
    entrants = tuple(seeded_keypair(f"{chain_id}/entrant{i}") for i in range(n_entrants))
    world = world_from_seed(b"popchain-committee-kit-seed", n_features=8, n_informative=4, n_classes=2)
    params = GenesisParams(entry_window_s=entry_window_s, opening_window_s=opening_window_s)
    kw = dict(chain_id=chain_id, rounds=rounds, shard_size=shard_size,
              allocations=[a for k in entrants for a in miner_funding(k.public, MINER_BALANCE, MINER_BOND)],
              params=params, timestamp=int(time.time()) - 10, n_train=400)
    if n == 1:    # the single-keyholder baseline: a version-1 genesis and one keyholder.secret
        genesis, secret = create_genesis(world, keyholder_pubkeys=[keys[0].public], **kw)  # type: ignore[arg-type]
        files = [keyholder_file(secret, [keys[0]])]
    else:         # a t-of-n committee from a DKG: genesis carries its key, member i its share
        key, files = local_committee(list(keys), t, label=chain_id)
        genesis = create_committee_genesis(world, committee=key, **kw)  # type: ignore[arg-type]
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
                entry = make_entry(k, self.chain.genesis.chain_id, r, anchor, hashlib.sha256(os.urandom(16)).digest(),
                                   os.urandom(32), os.urandom(32))
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


def kill(proc: Any) -> None:
    """SIGKILL a benchmarks._nodeproc.NodeProc (no clean shutdown: a crash)."""
    if proc.alive():
        proc.proc.send_signal(signal.SIGKILL)
        proc.proc.wait()
