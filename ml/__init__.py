"""popchain ml/: safe model format, bit-exact integer scoring, scikit-learn export, tasks and hidden shards.

What it does:
  * ``ml.model``  — the declarative model format (families linear / mlp / trees: canonical msgpack of
    dtype-tagged little-endian integer arrays), strict decoding under ``ModelCaps`` (sizes checked before any
    allocation, an overflow bound proved at load), typed ``ModelError`` naming the field.
  * ``ml.score``  — exact integer ``predict`` / ``score`` / ``paired`` (b, c): identical bits for any batch split,
    row order or BLAS thread count (int-in-float64 BLAS under the proved 2^53 bound, int64 otherwise).
  * ``ml.export`` — scikit-learn classifiers (and a leading scaler) to integer models, plus ``agreement``
    and the agreement contract (PROTOCOL §5.8).
  * ``ml.predictor`` — ``PopPredictor``, an sklearn-style wrapper with load/save.
  * ``ml.task``   — ``TaskSpec`` / ``Dataset``; built-in, CSV and secret-seed synthetic loaders; quantisation
    to integers happens once, at task creation.
  * ``ml.table`` / ``ml.encoding`` — CSV files as users have them (text categories, missing cells) and the
    column encoding a CSV task commits to in its spec (PROTOCOL §5.7).
  * ``ml.export_boosted`` — gradient-boosted trees (HistGradientBoosting, GradientBoosting) to the trees family;
    ``ml.treescan`` — their fast exact scoring (bit masks), beside ``ml.treewalk``.
  * ``ml.shards`` — hidden-shard packaging (public + secret packages), ``open_shard``, ``baseline_model``.
  * ``ml.blobs`` — content-addressed blobs for shard ciphertexts and public rows kept outside a package: the
    40-byte reference, the check, a blob directory, and the per-process sources ``open_shard`` reads (§3.15).

What it does NOT do: no networking, no storage beyond ``ml.blobs``' checked files, no clock, no consensus decisions (the paired test threshold and
rounds live in consensus/); it never unpickles or executes anything it reads; of ours it imports only chain's leaf modules encoding,
crypto and errors (the one canonical codec and hash, through ``ml.codec``).
"""
from .encoding import Encoding
from .errors import MLError, ModelError, ShardError, TaskError
from .model import (
    DEFAULT_CAPS,
    LinearModel,
    MLPModel,
    Model,
    ModelCaps,
    TreesModel,
    decode_model,
    encode_model,
)
from .score import Score, paired, predict  # not `score`: it would shadow the ml.score module
from .task import Dataset, TaskSpec, load_builtin, load_csv, synthetic

__all__ = [
    "DEFAULT_CAPS",
    "Dataset",
    "Encoding",
    "LinearModel",
    "MLError",
    "MLPModel",
    "Model",
    "ModelCaps",
    "ModelError",
    "Score",
    "ShardError",
    "TaskError",
    "TaskSpec",
    "TreesModel",
    "decode_model",
    "encode_model",
    "load_builtin",
    "load_csv",
    "paired",
    "predict",
    "synthetic",
]
