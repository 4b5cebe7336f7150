"""The popchain model format: declarative, versioned, canonical msgpack of integer arrays — data, never code.

Encodings (PROTOCOL.md §5), every array ``[dtype, shape, data]``:
  linear: ``[1, "linear", W (d, k), b (k,)]``
  mlp:    ``[1, "mlp", [[W1, b1], ..., [Wout, bout]], [s1, ..., sL]]``  (L = hidden layers <= 4; h = relu(z) >> s)
  trees:  ``[1, "trees", roots (T,), feature (N,), threshold (N,), left (N,), right (N,), value (N, k)]``
          node i internal iff feature[i] >= 0: go left iff x[feature] <= threshold; children are > i and inside
          the node's own tree, so no cycle is possible; leaves have feature = left = right = -1, threshold = 0;
          internal nodes have value 0. Score = sum of the leaf values reached in every tree.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .codec import check_int, check_list, check_str, decode_array, encode_array, pack, unpack_canonical
from .errors import ModelError
from .task import TaskSpec

VERSION = 1
FAMILIES = ("linear", "mlp", "trees")
MAX_HIDDEN_LAYERS = 4
MAX_SHIFT = 62


@dataclass(frozen=True)
class ModelCaps:
    max_bytes: int = 8 << 20            # encoded model size
    max_params: int = 1 << 22           # stored integers in all arrays
    max_madds: int = 1 << 20            # multiply-adds (linear/mlp) or node visits bound (trees) per sample
    max_width: int = 1024               # hidden units per layer
    max_depth: int = 32                 # tree depth (edges from root to deepest leaf)
    max_nodes: int = 1 << 18            # total tree nodes in an ensemble
    max_trees: int = 1024
    max_bound_bits: int = 53            # proved |partial sum| < 2**max_bound_bits at every layer (53: exact in float64)

    def __post_init__(self) -> None:
        if not 1 <= self.max_bound_bits <= 62:
            raise ValueError("max_bound_bits must lie in [1, 62] (int64 path must never overflow)")


DEFAULT_CAPS = ModelCaps()


@dataclass(frozen=True, eq=False)
class LinearModel:
    W: np.ndarray  # (d, k) int
    b: np.ndarray  # (k,) int
    family: str = field(default="linear", init=False)


@dataclass(frozen=True, eq=False)
class MLPModel:
    layers: tuple[tuple[np.ndarray, np.ndarray], ...]  # (W, b) per layer, the last one is the output layer
    shifts: tuple[int, ...]                            # one per hidden layer
    family: str = field(default="mlp", init=False)


@dataclass(frozen=True, eq=False)
class TreesModel:
    roots: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray  # (N, k)
    family: str = field(default="trees", init=False)


Model = LinearModel | MLPModel | TreesModel


def encode_model(model: Model) -> bytes:
    """Canonical bytes; arrays stored in the smallest allowed dtype that holds them."""
    if isinstance(model, LinearModel):
        obj: list[Any] = [VERSION, "linear", encode_array(model.W), encode_array(model.b)]
    elif isinstance(model, MLPModel):
        obj = [VERSION, "mlp", [[encode_array(W), encode_array(b)] for W, b in model.layers],
               [int(s) for s in model.shifts]]
    elif isinstance(model, TreesModel):
        obj = [VERSION, "trees"] + [encode_array(a) for a in (model.roots, model.feature, model.threshold,
                                                               model.left, model.right, model.value)]
    else:
        raise ModelError(f"model: unknown type {type(model).__name__}")
    return pack(obj)


def decode_model(data: bytes, spec: TaskSpec, caps: ModelCaps = DEFAULT_CAPS) -> Model:
    """Strictly validate ``data`` against the task and the caps; ModelError naming the field otherwise."""
    obj = unpack_canonical(data, max_size=caps.max_bytes, err=ModelError, field="model")
    fields = check_list(obj, None, ModelError, "model", max_len=16)
    if len(fields) < 2:
        raise ModelError("model: expected [version, family, ...]")
    check_int(fields[0], VERSION, VERSION, ModelError, "model.version")
    family = check_str(fields[1], 16, ModelError, "model.family")
    if family == "linear":
        model: Model = _decode_linear(fields, spec, caps)
    elif family == "mlp":
        model = _decode_mlp(fields, spec, caps)
    elif family == "trees":
        model = _decode_trees(fields, spec, caps)
    else:
        raise ModelError(f"model.family: {family!r} not one of {FAMILIES}")
    check_bounds(model, spec, caps)
    return model


def _decode_linear(fields: list[Any], spec: TaskSpec, caps: ModelCaps) -> LinearModel:
    check_list(fields, 4, ModelError, "model(linear)")
    d, k = spec.n_features, spec.n_classes
    if d * k > min(caps.max_params, caps.max_madds):
        raise ModelError(f"model.W: {d}x{k} exceeds the parameter/multiply-add caps")
    W = decode_array(fields[2], ModelError, "model.W", ndim=2, shape=(d, k), max_elements=caps.max_params)
    b = decode_array(fields[3], ModelError, "model.b", ndim=1, shape=(k,), max_elements=caps.max_params)
    return LinearModel(W, b)


def _decode_mlp(fields: list[Any], spec: TaskSpec, caps: ModelCaps) -> MLPModel:
    check_list(fields, 4, ModelError, "model(mlp)")
    layers_obj = check_list(fields[2], None, ModelError, "model.layers", max_len=MAX_HIDDEN_LAYERS + 1)
    if len(layers_obj) < 2:
        raise ModelError("model.layers: an mlp needs 1..4 hidden layers plus the output layer")
    shifts_obj = check_list(fields[3], len(layers_obj) - 1, ModelError, "model.shifts")
    shifts = tuple(check_int(s, 0, MAX_SHIFT, ModelError, f"model.shifts[{i}]") for i, s in enumerate(shifts_obj))
    # check the declared shapes of every layer (cheap, Python ints) before decoding any array
    widths = [spec.n_features]
    params = madds = 0
    for i, layer in enumerate(layers_obj):
        pair = check_list(layer, 2, ModelError, f"model.layers[{i}]")
        wshape = check_list(check_list(pair[0], 3, ModelError, f"model.layers[{i}].W")[1], 2, ModelError,
                            f"model.layers[{i}].W.shape")
        out = wshape[1]
        last = i == len(layers_obj) - 1
        check_int(out, 1, spec.n_classes if last else caps.max_width, ModelError, f"model.layers[{i}].W.shape[1]")
        if last and out != spec.n_classes:
            raise ModelError(f"model.layers[{i}].W.shape[1]: expected {spec.n_classes} classes, got {out}")
        madds += widths[-1] * out
        params += widths[-1] * out + out
        widths.append(out)
    if params > caps.max_params:
        raise ModelError(f"model.layers: {params} parameters exceeds the cap of {caps.max_params}")
    if madds > caps.max_madds:
        raise ModelError(f"model.layers: {madds} multiply-adds exceeds the cap of {caps.max_madds}")
    layers = []
    for i, layer in enumerate(layers_obj):
        W = decode_array(layer[0], ModelError, f"model.layers[{i}].W", ndim=2, shape=(widths[i], widths[i + 1]),
                         max_elements=caps.max_params)
        b = decode_array(layer[1], ModelError, f"model.layers[{i}].b", ndim=1, shape=(widths[i + 1],),
                         max_elements=caps.max_params)
        layers.append((W, b))
    return MLPModel(tuple(layers), shifts)


def _decode_trees(fields: list[Any], spec: TaskSpec, caps: ModelCaps) -> TreesModel:
    check_list(fields, 8, ModelError, "model(trees)")
    roots = decode_array(fields[2], ModelError, "model.roots", ndim=1, max_elements=caps.max_trees)
    n_nodes_obj = check_list(check_list(fields[3], 3, ModelError, "model.feature")[1], 1, ModelError,
                             "model.feature.shape")[0]
    n = check_int(n_nodes_obj, 1, caps.max_nodes, ModelError, "model.feature.shape[0]")
    k = spec.n_classes
    if n * (4 + k) > caps.max_params:
        raise ModelError(f"model: {n} nodes x {4 + k} values exceeds the parameter cap of {caps.max_params}")
    feature = decode_array(fields[3], ModelError, "model.feature", ndim=1, shape=(n,), max_elements=caps.max_nodes)
    threshold = decode_array(fields[4], ModelError, "model.threshold", ndim=1, shape=(n,),
                             max_elements=caps.max_nodes)
    left = decode_array(fields[5], ModelError, "model.left", ndim=1, shape=(n,), max_elements=caps.max_nodes)
    right = decode_array(fields[6], ModelError, "model.right", ndim=1, shape=(n,), max_elements=caps.max_nodes)
    value = decode_array(fields[7], ModelError, "model.value", ndim=2, shape=(n, k), max_elements=caps.max_params)
    model = TreesModel(roots, feature, threshold, left, right, value)
    check_tree_structure(model, spec, caps)
    return model


def check_tree_structure(m: TreesModel, spec: TaskSpec, caps: ModelCaps) -> int:
    """Validate node links (acyclic by construction: children > parent, inside the tree); return max depth."""
    n = m.feature.shape[0]
    T = m.roots.shape[0]
    if T < 1:
        raise ModelError("model.roots: at least one tree is required")
    roots = m.roots.astype(np.int64)
    if roots[0] != 0 or np.any(np.diff(roots) <= 0) or roots[-1] >= n:
        raise ModelError("model.roots: must start at 0 and strictly increase below the node count")
    tree_end = np.repeat(np.append(roots[1:], n), np.diff(np.append(roots, n)))  # end of each node's tree
    feat = m.feature.astype(np.int64)
    left = m.left.astype(np.int64)
    right = m.right.astype(np.int64)
    leaf = feat == -1
    internal = ~leaf
    if np.any(feat < -1) or np.any(feat >= spec.n_features):
        raise ModelError(f"model.feature: must be -1 (leaf) or in [0, {spec.n_features})")
    if np.any(leaf & ((left != -1) | (right != -1) | (m.threshold != 0))):
        raise ModelError("model.left/right/threshold: leaves need left = right = -1 and threshold = 0")
    if np.any(internal & np.any(m.value != 0, axis=1)):
        raise ModelError("model.value: internal nodes must have zero value")
    idx = np.arange(n)
    for name, child in (("left", left), ("right", right)):
        if np.any(internal & ((child <= idx) | (child >= tree_end))):
            raise ModelError(f"model.{name}: a child must follow its parent inside the same tree")
    if np.any(internal & (np.abs(m.threshold.astype(np.int64)) > (1 << 62))):
        raise ModelError("model.threshold: out of range")
    # longest root-to-node path, propagated level by level; more than max_depth levels means too deep
    depth = np.zeros(n, dtype=np.int64)
    parents = np.flatnonzero(internal)
    for level in range(caps.max_depth + 1):
        new = depth.copy()
        np.maximum.at(new, left[parents], depth[parents] + 1)
        np.maximum.at(new, right[parents], depth[parents] + 1)
        if np.array_equal(new, depth):
            max_depth = int(depth.max())
            if max_depth * T > caps.max_madds:
                raise ModelError(f"model: {T} trees x depth {max_depth} exceeds the node-visit cap {caps.max_madds}")
            return max_depth
        depth = new
    raise ModelError(f"model: tree depth exceeds the cap of {caps.max_depth}")


def abs_max(a: np.ndarray) -> int:
    """max |a| as an exact Python int (0 for an empty array). Unlike ``np.abs(a).max()`` it is right for the
    int64 minimum, whose int64 absolute value wraps to itself (negative)."""
    if a.size == 0:
        return 0
    return max(int(a.max()), -int(a.min()))


def dense_terms(model: LinearModel | MLPModel) -> list[tuple[int | None, int]]:
    """Per layer (max_j Σ_i |W_ij|, max |b|) as exact Python ints; the column sum is None when it could
    overflow int64 (then the layer's bound counts as certainly too large, see ``chain_bounds``)."""
    layers = [(model.W, model.b)] if isinstance(model, LinearModel) else list(model.layers)
    terms: list[tuple[int | None, int]] = []
    for W, b in layers:
        if W.size and abs_max(W) > (1 << 62) // max(1, W.shape[0]):
            terms.append((None, abs_max(b)))
            continue
        terms.append((int(np.abs(W.astype(np.int64)).sum(axis=0).max(initial=0)), abs_max(b)))
    return terms


def chain_bounds(terms: list[tuple[int | None, int]], shifts: tuple[int, ...] | list[int], max_abs: int) -> list[int]:
    """The per-layer bounds of PROTOCOL.md §5.3 for inputs with |x| <= max_abs: B = X·colsum + max|b|, X = max_abs
    for the first layer and B_prev >> s_prev after it. Monotone non-decreasing in ``max_abs``."""
    bounds = []
    x_max = max_abs
    for i, (colsum, bmax) in enumerate(terms):
        if colsum is None:
            bounds.append(1 << 64)  # column sums could overflow int64: certainly too large
            break
        bound = x_max * colsum + bmax
        bounds.append(bound)
        if i < len(shifts):
            x_max = bound >> shifts[i]  # ReLU output is >= 0 and at most the pre-activation bound
    return bounds


def layer_bounds(model: Model, spec: TaskSpec) -> list[int]:
    """Proved bound on |every partial sum| per layer: max|x|·max_j Σ_i|W_ij| + max|b| (Python ints, exact)."""
    if isinstance(model, TreesModel):
        return [model.roots.shape[0] * abs_max(model.value)]
    shifts = () if isinstance(model, LinearModel) else model.shifts
    return chain_bounds(dense_terms(model), shifts, spec.max_abs)


def check_bounds(model: Model, spec: TaskSpec, caps: ModelCaps) -> None:
    for i, bound in enumerate(layer_bounds(model, spec)):
        if bound >= 1 << caps.max_bound_bits:
            raise ModelError(f"model.layers[{i}]: overflow bound {bound} >= 2^{caps.max_bound_bits}")
