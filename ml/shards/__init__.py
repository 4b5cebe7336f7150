"""Hidden-shard packaging: what genesis carries (public) and what the keyholder keeps (secret).

Round r (1-based) owns shard r: canonical shard bytes S_r, a fresh 32-byte salt and a fresh SecretBox key.
Commitment r = H("popchain/shard", u64be(r), salt, S_r); ciphertext r = SecretBox(key).encrypt(salt ‖ S_r)
(24-byte nonce ‖ box). Revealing the 32-byte key alone lets anyone decrypt, recover the salt and check the
commitment. Two kinds of task package (the package version says which):
  * version 1, ROWS (digits, csv, ...): S_r = ``[1, r, X, y]`` — the rows themselves;
  * version 2, GENERATED (the synthetic task): S_r = ``[2, r, world, seed32]`` — ml.generator's parameters
    and a row seed; every node replays ``generate(world, seed, shard_size)``, so a 13,000-row shard costs
    genesis a few hundred bytes. The commitment binds world and seed, hence (the generator being
    deterministic) every generated row;
  * version 3, ROWS IN BLOBS: as version 1, but the package lists a 40-byte blob reference per shard instead of
    its ciphertext (ml.blobs, PROTOCOL §3.15): the ciphertexts travel as content-addressed blobs, so a package
    stays small whatever the dataset size. ``externalise`` turns a version-1 package into this form;
  * version 4, VRF-GENERATED (a committee chain's synthetic task, PROTOCOL §5.5): no sealed shard at all —
    the package carries the public world and the shard count; shard r is ``generate(world, key_r, size)``
    where key_r, the shard's seed, is the committee's threshold-VRF output for (chain, task, r), revealed by
    beacon r. Nobody, the task's creator included, can compute a shard before the committee releases it.
    Its ``commitments`` are per-shard *labels* (H("popchain/vrf-shard", task digest, u64 r): names, not
    bindings; the VRF proof in the beacon is what binds the key) and it has no ciphertexts.
A held-out test split never enters a package. Randomness (keys, salts, seeds) comes from the ``rng``
argument (default os.urandom), so a simulation can be reproducible without patching anything.

The package's parts, each a module of its own:
  * ``_package``: what a package is — PublicTask / SecretTask, their canonical encoding, decoding and limits,
    the blob form (``externalise``) and the VRF shard labels;
  * ``_sealing``: one shard — its canonical bytes, its commitment, sealing it and opening it with its key;
  * ``_making``: building packages from data or a world (stratified row assignment, the held-out test split,
    extension batches) and the baseline champion. Only a task's creator runs this; nodes never do.
Import from ``ml.shards`` (this surface), not from the private modules.
"""
from __future__ import annotations

from ._making import (
    GeneratedBatch,
    ShardBatch,
    baseline_model,
    demo_task,
    extend_generated,
    extend_rows,
    generated_batch,
    package_generated,
    package_task,
    package_vrf,
    split_test,
)
from ._package import (
    BLOBS,
    GENERATED,
    KEY_SIZE,
    MAX_GENERATED_SHARD_BYTES,
    MAX_ROUNDS,
    MAX_SHARD_SIZE,
    MAX_TASK_BYTES,
    MAX_TRAIN_ROWS,
    SALT_SIZE,
    SECRET_OVERHEAD,
    SHARD_TAG,
    TRAIN_BLOB_BYTES,
    VERSION,
    VRF_GENERATED,
    PublicTask,
    Rng,
    SecretTask,
    externalise,
    vrf_labels,
)
from ._sealing import (
    checked_shard_bytes,
    commitment,
    decode_generated_shard,
    decode_shard,
    encode_generated_shard,
    encode_shard,
    generated_world_digest,
    open_shard,
)

__all__ = [
    "BLOBS", "GENERATED", "KEY_SIZE", "MAX_GENERATED_SHARD_BYTES", "MAX_ROUNDS", "MAX_SHARD_SIZE", "MAX_TASK_BYTES",
    "MAX_TRAIN_ROWS", "SALT_SIZE", "SECRET_OVERHEAD", "SHARD_TAG", "TRAIN_BLOB_BYTES", "VERSION", "VRF_GENERATED",
    "GeneratedBatch", "PublicTask", "Rng", "SecretTask", "ShardBatch",
    "baseline_model", "checked_shard_bytes", "commitment", "decode_generated_shard", "decode_shard", "demo_task",
    "encode_generated_shard", "encode_shard", "extend_generated", "extend_rows", "externalise", "generated_batch",
    "generated_world_digest", "open_shard", "package_generated", "package_task", "package_vrf", "split_test",
    "vrf_labels",
]
