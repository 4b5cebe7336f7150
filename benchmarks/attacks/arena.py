"""In-process arena for the long-run attackers: the real Engine + Keyholder on a memory store, a simulated clock
and as many funded keys as an attack needs - every entry, beacon, opening and close through the same path a
network peer takes (benchmarks.simulator's, without its training cast), so 200+ rounds and 1,000+ keys run in
seconds. What it does not do: network, wall clock, or any judgement of its own (the Engine judges).
"""
from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks.attacks.protocol import bare_entry, open_entry, seal_entry, stake_allocations
from benchmarks.simulator import GENESIS_TIME, _rng_bytes, _until
from chain.address import address_of
from chain.crypto import Keypair
from chain.errors import PopError, RuleError
from chain.state import BURN_ACCOUNT
from chain.store import ChainStore
from chain.tx import Transfer
from consensus.engine import BlockVerdict, Engine
from consensus.keyholder import Keyholder, RoundClosed
from consensus.protocol.genesis import Genesis, GenesisParams, create_genesis
from consensus.protocol.messages import AnchorNotice, Beacon
from consensus.protocol.settlement import bond_of
from ml.generator import world_from_seed
from ml.model import encode_model
from ml.training import train_candidate


def key(seed: bytes, name: str) -> Keypair:
    return Keypair.from_seed(hashlib.sha256(seed + b"/attack-key/" + name.encode()).digest())


@dataclass(frozen=True)
class Sealed:
    key: Keypair
    block: object   # chain.block.Block (kept loose: the arena only passes it back to open())


class Arena:
    """One chain: ``create``, then per round ``start_round`` → ``enter``… → ``reveal`` → ``open``… → ``close``."""

    def __init__(self, genesis: Genesis, secret: bytes, keyholder_kp: Keypair, seed: bytes) -> None:
        self.genesis, self.seed = genesis, seed
        self.store = ChainStore.memory()
        self.engine = Engine(self.store, genesis)
        self.keyholder = Keyholder(self.engine, secret, [keyholder_kp])
        self.now = GENESIS_TIME + 1
        self.salts = _rng_bytes(seed + b"/salts")
        self._model: bytes | None = None

    @classmethod
    def create(cls, seed: bytes, *, params: GenesisParams, rounds: int, balances: Sequence[tuple[bytes, int]],
               shard_size: int = 400, n_train: int = 1_500, drift_milli: int = 0) -> Arena:
        """A generated-task chain (ml.generator, 24 features) whose ``balances`` are (pubkey, grains): each key gets
        them to spend and as stake (its bond account, protocol.stake_allocations)."""
        world = world_from_seed(seed)
        kh = key(seed, "keyholder")
        alloc = sorted({a: n for pub, amount in balances for a, n in stake_allocations(pub, amount)}.items())
        genesis, secret = create_genesis(world, chain_id="popchain-attack", rounds=rounds, shard_size=shard_size,
                                         allocations=alloc, keyholder_pubkeys=[kh.public], params=params,
                                         timestamp=GENESIS_TIME, n_train=n_train, rng=_rng_bytes(seed),
                                         drift_milli=drift_milli)
        return cls(genesis, secret, kh, seed)

    def close_store(self) -> None:
        self.store.close()

    # ------------------------------------------------------------ rounds

    def start_round(self) -> int:
        """Step the keyholder until a round is open; returns it."""
        if not self.engine.open_round():
            for action in self.keyholder.step(self.now):
                del action
        r = self.engine.open_round()
        if not r:
            raise RuntimeError("no round opens")
        return r

    def notice(self) -> AnchorNotice:
        notice = self.engine.notice(self.engine.open_round())
        assert notice is not None
        return notice

    def enter(self, kp: Keypair, model: bytes, *, timestamp: int | None = None, salt: bytes | None = None,
              txs: Sequence[Transfer] = ()) -> Sealed | str:
        """Seal + enter: Sealed if the keyholder accepted it, else the refusal ("refused:<code>" / "not-kept")."""
        try:
            tpl = self.engine.build_template(kp.public, list(txs), timestamp or self.now)
            if timestamp is not None:     # an attacker stamps what it likes; the template clamps honest clocks
                tpl = dataclasses.replace(tpl, timestamp=timestamp)
            block, entry = seal_entry(tpl, model, kp, salt if salt is not None else self.salts(32))
            self.engine.add_entry(entry)
            if not self.keyholder.on_entry(entry):
                return "not-kept"
        except RuleError as exc:
            return f"refused:{exc.code}"
        except (PopError, ValueError) as exc:
            return f"refused:{type(exc).__name__}"
        return Sealed(kp, block)

    def squat(self, kp: Keypair, i: int) -> bool:
        """A bare entry (never opened: a random header hash) straight to the keyholder; True if kept."""
        r = self.engine.open_round()
        entry = bare_entry(kp, self.genesis.chain_id, r, self.engine.final_hash(), self.salts(32))
        try:
            return self.keyholder.on_entry(entry)
        except RuleError:
            return False

    def reveal(self) -> Beacon:
        self.now, beacon = _until(self.keyholder, self.now, Beacon)
        assert isinstance(beacon, Beacon)
        return beacon

    def open(self, sealed: Sealed, beacon: Beacon) -> BlockVerdict:
        opened = open_entry(sealed.block, beacon, genesis=self.genesis,  # type: ignore[arg-type]
                            champion=self.engine.champion_model(), activations=self.engine.activation_bytes(beacon))
        return self.engine.add_block(opened)

    def close(self) -> RoundClosed:
        self.now, closed = _until(self.keyholder, self.now, RoundClosed)
        assert isinstance(closed, RoundClosed)
        return closed

    # ------------------------------------------------------------ state

    def balance(self, pub: bytes) -> int:
        return self.store.state_view(self.engine.tip().hash).get_account(address_of(pub)).balance

    def bond(self, pub: bytes) -> int:
        """The key's stake: its bond account (PROTOCOL §3.9)."""
        return self.store.state_view(self.engine.tip().hash).get_account(bond_of(pub)).balance

    def burnt(self) -> int:
        """Every bond forfeit charged so far (PROTOCOL §3.9): the burn account, less the block rewards of plain
        blocks it also holds (issue 21: the child of a plain block burns its reward; arena chains are short)."""
        tip = self.engine.tip()
        balance = self.store.state_view(tip.hash).get_account(BURN_ACCOUNT).balance
        plain_parents = sum(1 for h in range(1, tip.height) if self.engine.champion_at(h) is None)
        return balance - self.genesis.params.block_reward * plain_parents

    def honest_model(self) -> bytes:
        """A linear model fitted on the public data: beats the genesis depth-2 tree (it crowns a settling round)."""
        if self._model is None:
            g = self.genesis
            self._model = encode_model(train_candidate("linear", g.task.training, [], seed=1, caps=g.model_caps))
        return self._model

    def throwaway_model(self, i: int) -> bytes:
        """Distinct bytes per ``i`` for an entry that never opens (it is never decoded: only its hash is sealed)."""
        return self.honest_model() + i.to_bytes(4, "big")
