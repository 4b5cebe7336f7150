"""Task messages (PROTOCOL §3.13): the task announcement (a new task after genesis) and the task extension (a
batch of new hidden shards for a live task), both signed by the chain's governance keys (the genesis keyholder
set and threshold, the ``[[pubkey, sig]…]`` format of notices and beacons).

Each message is a canonical positional array with a byte cap; ``decode_task_message`` checks every type, size
and range (``DecodeError``) before building an object, cheap checks first: the public package inside an
announcement is decoded by ml/ only when the engine validates the message (``check_payload``), never here.
The message id (``msg_hash``) is H("popchain/task-msg", encoded bytes): notices name activations by it.
``check_batch_material`` is the rule for a message's ``keyholder_material`` field against the genesis committee.

What it does NOT do: decide whether a message may be activated now (unknown task, sequence, replay: that needs
the chain's task registry, consensus.protocol.registry / the engine), hold any state, or move any funds.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from chain.crypto import Keypair, tagged_hash, verify_sig
from chain.encoding import (
    check_bytes,
    check_bytes_max,
    check_int,
    check_list,
    check_list_max,
    pack_trusted,
    unpack,
)
from chain.errors import DecodeError, RuleError
from chain.tx import check_chain_id
from consensus.protocol.genesis import Genesis
from consensus.protocol.messages import (
    MAX_TASK_ID,
    Signatures,
    _check_signatures,
    _sign_all,
    verify_keyholder_sigs,
)
from consensus.protocol.release import SealedShard, decode_seal_material

__all__ = [
    "ANNOUNCE", "ANNOUNCE_TAG", "ESCROW_TAG", "EXTEND", "EXTEND_TAG", "MAX_AMOUNT", "MAX_ANNOUNCEMENT_SIZE",
    "MAX_CHAMPION_SIZE", "MAX_CIPHERTEXT_SIZE", "MAX_EXTENSION_SIZE", "MAX_EXT_SEQ", "MAX_EXT_SHARDS",
    "MAX_EXT_SHARD_BYTES", "MAX_MATERIAL_SIZE", "MAX_PACKAGE_SIZE", "MAX_TASK_MSG_SIZE", "MSG_TAG",
    "TASK_MSG_VERSION", "TaskAnnouncement", "TaskExtension", "TaskMessage", "check_batch_material", "cosign",
    "decode_task_message", "escrow_account", "initial_champion", "make_task_announcement",
    "make_task_extension",
]

ANNOUNCE = 1
EXTEND = 2
TASK_MSG_VERSION = 1

MAX_EXT_SEQ = 2**32 - 1
MAX_AMOUNT = 2**62
MAX_PACKAGE_SIZE = 3 << 20         # an announcement's public package (ml PublicTask bytes)
MAX_CHAMPION_SIZE = 1 << 20        # its initial champion (bounded again by the genesis model caps)
MAX_MATERIAL_SIZE = 256 << 10      # keyholder material: 70 bytes of sealed key per shard (§3.14): 3,700 shards
MAX_EXT_SHARDS = 1024              # shards one extension appends
MAX_CIPHERTEXT_SIZE = 256 << 10    # one shard's ciphertext inside an extension (a generated shard fits easily)
MAX_EXT_SHARD_BYTES = 4 << 20      # all ciphertexts of one extension together
MAX_ANNOUNCEMENT_SIZE = MAX_PACKAGE_SIZE + MAX_CHAMPION_SIZE + MAX_MATERIAL_SIZE + 4096
MAX_EXTENSION_SIZE = MAX_EXT_SHARD_BYTES + MAX_EXT_SHARDS * 48 + MAX_MATERIAL_SIZE + 4096
MAX_TASK_MSG_SIZE = max(MAX_ANNOUNCEMENT_SIZE, MAX_EXTENSION_SIZE)

MSG_TAG = "popchain/task-msg"              # message id
ANNOUNCE_TAG = "popchain/task-announce"    # governance + sponsor sighash
EXTEND_TAG = "popchain/task-extend"        # governance sighash
ESCROW_TAG = "popchain/escrow"


def escrow_account(task_id: int) -> bytes:
    """The task's bounty escrow: H("popchain/escrow", u32be(task_id))[:20] — a hash output, not any key's
    address (like the burn account), so nothing spends from it except the consensus moves of §3.13."""
    return tagged_hash(ESCROW_TAG, task_id.to_bytes(4, "big"))[:20]


def _check_kind_version(value: Any, kind: int, name: str) -> None:
    check_int(value, kind, kind, f"{name}.kind")


@dataclass(frozen=True)
class TaskAnnouncement:
    """A new task: its public package (ml PublicTask bytes: spec, public data, shard commitments and
    ciphertexts), the initial champion model bytes (ml.shards.baseline_model of the package, computed by the
    announcer; validators decode it under the caps, they do not retrain), the bounty escrowed from the
    sponsor at activation and paid per crowning, the sponsor key and its signature (it authorises the escrow),
    keyholder material (its shard keys sealed to the committee, §3.14), and the governance signatures."""
    kind: int
    version: int
    chain_id: str
    package: bytes
    champion: bytes
    bounty: int
    per_crowning: int
    sponsor: bytes
    keyholder_material: bytes = b""
    sponsor_sig: bytes = bytes(64)
    signatures: Signatures = ()

    def __post_init__(self) -> None:
        _check_kind_version(self.kind, ANNOUNCE, "announcement")
        check_int(self.version, TASK_MSG_VERSION, TASK_MSG_VERSION, "announcement.version")
        check_chain_id(self.chain_id, "announcement.chain_id")
        check_bytes_max(self.package, MAX_PACKAGE_SIZE, "announcement.package")
        check_bytes_max(self.champion, MAX_CHAMPION_SIZE, "announcement.champion")
        check_int(self.bounty, 0, MAX_AMOUNT, "announcement.bounty")
        check_int(self.per_crowning, 0, MAX_AMOUNT, "announcement.per_crowning")
        check_bytes(self.sponsor, 32, "announcement.sponsor")
        check_bytes_max(self.keyholder_material, MAX_MATERIAL_SIZE, "announcement.keyholder_material")
        check_bytes(self.sponsor_sig, 64, "announcement.sponsor_sig")
        if not self.package or not self.champion:
            raise DecodeError("announcement: empty package or champion")

    def unsigned_fields(self) -> list[Any]:
        return [self.kind, self.version, self.chain_id, self.package, self.champion, self.bounty,
                self.per_crowning, self.sponsor, self.keyholder_material]

    @cached_property
    def sighash(self) -> bytes:
        """What the sponsor and every governance key sign (the package hashed once, not copied per signer)."""
        return tagged_hash(ANNOUNCE_TAG, pack_trusted(self.unsigned_fields()))

    def verify_sponsor(self) -> bool:
        return verify_sig(self.sponsor, self.sighash, self.sponsor_sig)

    def verify(self, keyholders: Sequence[bytes], threshold: int) -> bool:
        return verify_keyholder_sigs(self.signatures, self.sighash, keyholders, threshold)

    def encode(self) -> bytes:
        return pack_trusted([*self.unsigned_fields(), self.sponsor_sig, [list(s) for s in self.signatures]])

    @cached_property
    def msg_hash(self) -> bytes:
        return tagged_hash(MSG_TAG, self.encode())


@dataclass(frozen=True)
class TaskExtension:
    """``commitments``/``ciphertexts`` become shards shards_total+1 … of task ``task_id`` (same per-shard
    format as the package, the commitment binding the task-local shard index; a VRF-generated task's shards are
    its labels with empty ciphertexts: nothing is sealed); ``seq`` = the task's extensions so far + 1 (a replay
    or reorder is refused); ``keyholder_material``: the new keys sealed to the committee (§3.14)."""
    kind: int
    version: int
    chain_id: str
    task_id: int
    seq: int
    commitments: tuple[bytes, ...]
    ciphertexts: tuple[bytes, ...]
    keyholder_material: bytes = b""
    signatures: Signatures = ()

    def __post_init__(self) -> None:
        _check_kind_version(self.kind, EXTEND, "extension")
        check_int(self.version, TASK_MSG_VERSION, TASK_MSG_VERSION, "extension.version")
        check_chain_id(self.chain_id, "extension.chain_id")
        check_int(self.task_id, 0, MAX_TASK_ID, "extension.task_id")
        check_int(self.seq, 1, MAX_EXT_SEQ, "extension.seq")
        if not isinstance(self.commitments, tuple) or not isinstance(self.ciphertexts, tuple):
            raise DecodeError("extension: commitments and ciphertexts must be tuples")
        if not 1 <= len(self.commitments) <= MAX_EXT_SHARDS or len(self.ciphertexts) != len(self.commitments):
            raise DecodeError(f"extension: 1 to {MAX_EXT_SHARDS} shards, one ciphertext per commitment")
        total = 0
        for i, (c, ct) in enumerate(zip(self.commitments, self.ciphertexts)):
            check_bytes(c, 32, f"extension.commitments[{i}]")
            check_bytes_max(ct, MAX_CIPHERTEXT_SIZE, f"extension.ciphertexts[{i}]")
            if 0 < len(ct) <= 72 + 32:   # nonce + MAC + salt: nothing inside (empty: a VRF-generated shard)
                raise DecodeError(f"extension.ciphertexts[{i}]: too short ({len(ct)} bytes)")
            total += len(ct)
        if total > MAX_EXT_SHARD_BYTES:
            raise DecodeError(f"extension: {total} ciphertext bytes exceeds {MAX_EXT_SHARD_BYTES}")
        check_bytes_max(self.keyholder_material, MAX_MATERIAL_SIZE, "extension.keyholder_material")

    @property
    def vrf(self) -> bool:
        """Its shards are VRF-generated (every ciphertext empty): nothing to seal (§3.14)."""
        return not any(self.ciphertexts)

    def unsigned_fields(self) -> list[Any]:
        return [self.kind, self.version, self.chain_id, self.task_id, self.seq, list(self.commitments),
                list(self.ciphertexts), self.keyholder_material]

    @cached_property
    def sighash(self) -> bytes:
        return tagged_hash(EXTEND_TAG, pack_trusted(self.unsigned_fields()))

    def verify(self, keyholders: Sequence[bytes], threshold: int) -> bool:
        return verify_keyholder_sigs(self.signatures, self.sighash, keyholders, threshold)

    def encode(self) -> bytes:
        return pack_trusted([*self.unsigned_fields(), [list(s) for s in self.signatures]])

    @cached_property
    def msg_hash(self) -> bytes:
        return tagged_hash(MSG_TAG, self.encode())


TaskMessage = TaskAnnouncement | TaskExtension


def decode_task_message(data: bytes) -> TaskMessage:
    """Decode an announcement or an extension (the first field says which). DecodeError on anything else."""
    f = check_list_max(unpack(data, max_size=MAX_TASK_MSG_SIZE), 11, "task message")
    if not f or type(f[0]) is not int:
        raise DecodeError("task message: expected [kind, …]")
    if f[0] == ANNOUNCE:
        if len(data) > MAX_ANNOUNCEMENT_SIZE:
            raise DecodeError(f"announcement: {len(data)} bytes exceeds {MAX_ANNOUNCEMENT_SIZE}")
        f = check_list(f, 11, "announcement")
        for i in (3, 4, 8, 9):
            if type(f[i]) is not bytes:
                raise DecodeError("announcement: package, champion, material and sponsor_sig are bytes")
        msg: TaskMessage = TaskAnnouncement(f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9],
                                            _check_signatures(f[10], "announcement.signatures"))
    elif f[0] == EXTEND:
        if len(data) > MAX_EXTENSION_SIZE:
            raise DecodeError(f"extension: {len(data)} bytes exceeds {MAX_EXTENSION_SIZE}")
        f = check_list(f, 9, "extension")
        commits = tuple(check_list_max(f[5], MAX_EXT_SHARDS, "extension.commitments"))
        cts = tuple(check_list_max(f[6], MAX_EXT_SHARDS, "extension.ciphertexts"))
        msg = TaskExtension(f[0], f[1], f[2], f[3], f[4], commits, cts, f[7],
                            _check_signatures(f[8], "extension.signatures"))
    else:
        raise DecodeError(f"task message: unknown kind {f[0]}")
    if type(msg.chain_id) is not str:
        raise DecodeError("task message: chain_id must be a string")
    if msg.encode() != bytes(data):
        raise DecodeError("task message: non-canonical encoding")
    return msg


def make_task_announcement(governance: Sequence[Keypair], sponsor: Keypair, chain_id: str, package: bytes,
                           champion: bytes, *, bounty: int = 0, per_crowning: int = 0,
                           keyholder_material: bytes = b"") -> TaskAnnouncement:
    """Sign an announcement: ``package`` = ml PublicTask bytes, ``champion`` = encoded initial model (use
    ``initial_champion(package)``). The sponsor signs first; ``governance`` holds ≥ threshold genesis keys."""
    fields = (ANNOUNCE, TASK_MSG_VERSION, chain_id, package, champion, bounty, per_crowning, sponsor.public,
              keyholder_material)
    unsigned = TaskAnnouncement(*fields)
    sponsor_sig = sponsor.sign(unsigned.sighash)
    return TaskAnnouncement(*fields, sponsor_sig, _sign_all(governance, unsigned.sighash))


def cosign(msg: TaskMessage, governance: Sequence[Keypair]) -> TaskMessage:
    """Add governance signatures to an announcement/extension (keeps the ones it has; one per key)."""
    sigs = {pub: sig for pub, sig in msg.signatures}
    for pub, sig in _sign_all(governance, msg.sighash):
        sigs.setdefault(pub, sig)
    return dataclasses.replace(msg, signatures=tuple(sorted(sigs.items())))


def make_task_extension(governance: Sequence[Keypair], chain_id: str, task_id: int, seq: int,
                        commitments: Sequence[bytes], ciphertexts: Sequence[bytes], *,
                        keyholder_material: bytes = b"") -> TaskExtension:
    """Sign an extension of ``task_id`` with sequence number ``seq`` (= its extensions so far + 1)."""
    fields = (EXTEND, TASK_MSG_VERSION, chain_id, task_id, seq, tuple(commitments), tuple(ciphertexts),
              keyholder_material)
    unsigned = TaskExtension(*fields)
    return TaskExtension(*fields, _sign_all(governance, unsigned.sighash))


def initial_champion(package: bytes) -> bytes:
    """The initial champion of a task package: ml.shards.baseline_model (a depth-2 tree on the public data),
    encoded. Tooling only (it trains with scikit-learn, imported lazily by ml/); validators never call it."""
    from ml.model import encode_model
    from ml.shards import PublicTask, baseline_model
    return encode_model(baseline_model(PublicTask.decode(package)))


def check_batch_material(genesis: Genesis, data: bytes, n_shards: int, *, vrf: bool = False,
                         ) -> tuple[SealedShard, ...] | None:
    """THE rule for the ``keyholder_material`` field of a task announcement or extension carrying ``n_shards``
    new shards (§3.14): on a committee chain, the batch's shard keys sealed to the committee (one
    ``SealedShard`` per shard), or nothing at all for a VRF-generated batch (``vrf``: its seeds are the
    committee's VRF outputs); on a single-keyholder chain (version-1 genesis) it is empty.
    RuleError("bad-keyholder-material") otherwise. Returns the sealed keys (None when there are none)."""
    if genesis.committee is None:
        if data:
            raise RuleError("bad-keyholder-material", "this chain has no keyholder committee: the field is empty")
        if vrf:
            raise RuleError("bad-keyholder-material", "a VRF-generated task needs a keyholder committee")
        return None
    if vrf:
        if data:
            raise RuleError("bad-keyholder-material", "a VRF-generated task seals no keys (nobody has any)")
        return None
    return decode_seal_material(data, n_shards)
