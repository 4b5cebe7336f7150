"""Export a popchain integer model to ONNX with its integer semantics preserved (``popchain model export``).

Inputs. A task without an encoding: ``x``, float64 features in the task's ORIGINAL units (the format of
``holdout.csv``), quantised inside the graph exactly as ``ml.task.quantise`` does (multiply by 2^scale_bits,
round half to even, clip to ±max_abs, cast to int64). A CSV task (``spec.encoding``, ``ml.encoding``): one
input per column, named as the column, shape (n, 1) — numeric columns float64 with NaN for a missing value,
categorical columns strings (stripped cells); the graph applies the committed encoding (fill / indicator,
2^scale_bits, clip to [lo, hi]; categories by an ai.onnx.ml LabelEncoder, 0 for missing or unknown).
Everything after that is int64 arithmetic, the same integers ``ml.score`` computes:
  linear: scores = X·W + b                           (MatMul / Add on int64)
  mlp:    h = max(h·W + b, 0) // 2^s per hidden layer  (Max, then Div of a non-negative int64 = the right shift)
  trees:  a level-synchronous walk unrolled to the model's depth (Gather / GatherElements / LessOrEqual /
          Where on int64 node indexes), then the sum of the reached leaves' integer votes (ReduceSum)
Every partial sum stays below 2^53 (the decoder's proved bound, PROTOCOL.md §5.3), so int64 never overflows.
Outputs: ``label`` (int64 class index, ArgMax with ties to the LOWEST index, as numpy's argmax) and ``scores``
(int64 class scores). It does not do: NaN checks (quantise refuses NaN; the graph would not), float models.
"""
from __future__ import annotations

import numpy as np

from .errors import MLError, ModelError
from .model import LinearModel, MLPModel, Model, ModelCaps, TreesModel, check_tree_structure
from .task import TaskSpec

OPSET = 17
ML_OPSET = 3            # ai.onnx.ml: LabelEncoder (string -> int64) for categorical columns
IR_VERSION = 8          # readable by onnxruntime >= 1.13 and most converters


def _tensor(name: str, value: np.ndarray):
    from onnx import numpy_helper
    return numpy_helper.from_array(np.ascontiguousarray(value), name)


def _quantise_nodes(spec: TaskSpec, helper) -> tuple[list, list]:
    inits = [_tensor("q_scale", np.array(float(1 << spec.scale_bits))),
             _tensor("q_lo", np.array(float(-spec.max_abs))), _tensor("q_hi", np.array(float(spec.max_abs)))]
    nodes = [helper.make_node("Mul", ["x", "q_scale"], ["q_mul"]),
             helper.make_node("Round", ["q_mul"], ["q_round"]),      # half to even, like np.rint
             helper.make_node("Clip", ["q_round", "q_lo", "q_hi"], ["q_clip"]),
             helper.make_node("Cast", ["q_clip"], ["X"], to=7)]    # 7 = INT64; exact: |value| <= max_abs < 2^31
    return nodes, inits


def _encoding_nodes(spec: TaskSpec, helper, TensorProto) -> tuple[list, list, list]:
    """(nodes, initializers, graph inputs) turning one input per column into the int64 features ``X``."""
    from .encoding import CategoricalColumn
    enc = spec.encoding
    assert enc is not None
    nodes: list = []
    inits = [_tensor("e_zero_f", np.array(0.0))]
    inputs, parts = [], []
    for i, c in enumerate(enc.columns):
        p = f"e{i}_"
        if isinstance(c, CategoricalColumn):
            inputs.append(helper.make_tensor_value_info(c.name, TensorProto.STRING, [None, 1]))
            nodes.append(helper.make_node("LabelEncoder", [c.name], [p + "code"], domain="ai.onnx.ml",
                                          keys_strings=list(c.categories) or [""],
                                          values_int64s=list(range(1, len(c.categories) + 1)) or [0],
                                          default_int64=0))
            parts.append(p + "code")
            continue
        inputs.append(helper.make_tensor_value_info(c.name, TensorProto.DOUBLE, [None, 1]))
        inits += [_tensor(p + "scale", np.array(float(1 << c.scale_bits))), _tensor(p + "lo", np.array(float(c.lo))),
                  _tensor(p + "hi", np.array(float(c.hi))), _tensor(p + "fill", np.array(c.fill, dtype=np.int64))]
        nodes += [helper.make_node("IsNaN", [c.name], [p + "nan"]),
                  helper.make_node("Where", [p + "nan", "e_zero_f", c.name], [p + "safe"]),
                  helper.make_node("Mul", [p + "safe", p + "scale"], [p + "mul"]),
                  helper.make_node("Round", [p + "mul"], [p + "round"]),        # half to even, like np.rint
                  helper.make_node("Clip", [p + "round", p + "lo", p + "hi"], [p + "clip"]),
                  helper.make_node("Cast", [p + "clip"], [p + "q"], to=TensorProto.INT64),
                  helper.make_node("Where", [p + "nan", p + "fill", p + "q"], [p + "value"])]
        parts.append(p + "value")
        if c.indicator:
            nodes.append(helper.make_node("Cast", [p + "nan"], [p + "missing"], to=TensorProto.INT64))
            parts.append(p + "missing")
    nodes.append(helper.make_node("Concat", parts, ["X"], axis=1))
    return nodes, inits, inputs


def _dense_nodes(model: LinearModel | MLPModel, helper) -> tuple[list, list]:
    layers = [(model.W, model.b)] if isinstance(model, LinearModel) else list(model.layers)
    shifts = () if isinstance(model, LinearModel) else model.shifts
    nodes, inits = [], [_tensor("zero", np.array(0, dtype=np.int64))]
    h = "X"
    for i, (W, b) in enumerate(layers):
        inits += [_tensor(f"W{i}", W.astype(np.int64)), _tensor(f"b{i}", b.astype(np.int64))]
        nodes += [helper.make_node("MatMul", [h, f"W{i}"], [f"m{i}"]),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"z{i}"])]
        h = f"z{i}"
        if i < len(shifts):
            nodes.append(helper.make_node("Max", [h, "zero"], [f"r{i}"]))
            h = f"r{i}"
            if shifts[i]:
                # floor division of a non-negative integer by 2^s is the arithmetic right shift by s
                inits.append(_tensor(f"s{i}", np.array(1 << int(shifts[i]), dtype=np.int64)))
                nodes.append(helper.make_node("Div", [h, f"s{i}"], [f"d{i}"]))
                h = f"d{i}"
    nodes.append(helper.make_node("Identity", [h], ["scores"]))
    return nodes, inits


def _tree_nodes(model: TreesModel, depth: int, helper) -> tuple[list, list]:
    feature = model.feature.astype(np.int64)
    leaf = feature < 0
    n = feature.shape[0]
    idx = np.arange(n, dtype=np.int64)
    # leaves point to themselves, so extra walk steps are no-ops (the walk stops at a leaf, as treewalk does)
    inits = [_tensor("t_roots", model.roots.astype(np.int64)[None, :]),
             _tensor("t_feature", np.where(leaf, 0, feature)),
             _tensor("t_threshold", model.threshold.astype(np.int64)),
             _tensor("t_left", np.where(leaf, idx, model.left.astype(np.int64))),
             _tensor("t_right", np.where(leaf, idx, model.right.astype(np.int64))),
             _tensor("t_value", model.value.astype(np.int64)),
             _tensor("t_col0", np.array([0], dtype=np.int64)), _tensor("zero", np.array(0, dtype=np.int64)),
             _tensor("t_axis1", np.array([1], dtype=np.int64))]
    # (n, T) start indexes: zeros of shape (n, 1) (from X's first column) plus the roots (1, T)
    nodes = [helper.make_node("Gather", ["X", "t_col0"], ["x_col0"], axis=1),
             helper.make_node("Mul", ["x_col0", "zero"], ["zeros_n1"]),
             helper.make_node("Add", ["zeros_n1", "t_roots"], ["node0"])]
    cur = "node0"
    for step in range(depth):
        p = f"w{step}_"
        nodes += [helper.make_node("Gather", ["t_feature", cur], [p + "f"]),
                  helper.make_node("GatherElements", ["X", p + "f"], [p + "x"], axis=1),
                  helper.make_node("Gather", ["t_threshold", cur], [p + "t"]),
                  helper.make_node("LessOrEqual", [p + "x", p + "t"], [p + "go_left"]),
                  helper.make_node("Gather", ["t_left", cur], [p + "l"]),
                  helper.make_node("Gather", ["t_right", cur], [p + "r"]),
                  helper.make_node("Where", [p + "go_left", p + "l", p + "r"], [p + "next"])]
        cur = p + "next"
    nodes += [helper.make_node("Gather", ["t_value", cur], ["leaf_votes"]),             # (n, T, k)
              helper.make_node("ReduceSum", ["leaf_votes", "t_axis1"], ["scores"], keepdims=0)]
    return nodes, inits


def to_onnx(model: Model, spec: TaskSpec, caps: ModelCaps, *, metadata: dict[str, str] | None = None) -> bytes:
    """Serialized ONNX model computing exactly ``ml.score.predict(model, quantise(x))``."""
    import onnx
    from onnx import TensorProto, helper

    if spec.encoding is not None:
        qnodes, qinits, inputs = _encoding_nodes(spec, helper, TensorProto)
    else:
        qnodes, qinits = _quantise_nodes(spec, helper)
        inputs = [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [None, spec.n_features])]
    if isinstance(model, TreesModel):
        depth = check_tree_structure(model, spec, caps)
        body, inits = _tree_nodes(model, depth, helper)
    elif isinstance(model, (LinearModel, MLPModel)):
        body, inits = _dense_nodes(model, helper)
    else:
        raise ModelError(f"model: unknown type {type(model).__name__}")
    out = [helper.make_node("ArgMax", ["scores"], ["label"], axis=1, keepdims=0, select_last_index=0)]
    seen: set[str] = set()
    initializers = []
    for t in qinits + inits:     # one initializer per name
        if t.name not in seen:
            seen.add(t.name)
            initializers.append(t)
    internal = seen | {o for n in qnodes + body + out for o in n.output}
    clash = sorted(i.name for i in inputs if i.name in internal)
    if clash:
        raise ModelError(f"onnx: column names {clash[:5]} collide with the graph's own tensor names")
    graph = helper.make_graph(
        qnodes + body + out, f"popchain-{spec.name}", inputs,
        [helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
         helper.make_tensor_value_info("scores", TensorProto.INT64, [None, spec.n_classes])],
        initializer=initializers)
    opsets = [helper.make_opsetid("", OPSET)]
    if spec.encoding is not None:
        opsets.append(helper.make_opsetid("ai.onnx.ml", ML_OPSET))
    onnx_model = helper.make_model(graph, opset_imports=opsets,
                                   producer_name="popchain", doc_string=__doc__.splitlines()[0])
    onnx_model.ir_version = IR_VERSION
    import json
    meta = {"classes": ",".join(spec.classes), "task_spec": json.dumps(spec.to_obj()), **(metadata or {})}
    for key, value in meta.items():
        onnx_model.metadata_props.add(key=key, value=str(value))
    onnx.checker.check_model(onnx_model)
    return onnx_model.SerializeToString()


class OnnxPredictor:
    """Run an exported model with onnxruntime: ``predict(x)`` on float64 rows in original units; for a CSV task
    (its spec, with the encoding, is in the metadata ``task_spec``) ``predict(x)`` takes the task's integer
    features and feeds the graph the cells they stand for (``column_inputs``), ``predict_columns`` raw cells."""

    def __init__(self, data: bytes) -> None:
        import onnxruntime as ort
        try:
            self.session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 -- onnxruntime raises its own untyped errors on a bad file
            raise ModelError(f"onnx: cannot load the model ({type(exc).__name__}: {str(exc)[:200]})") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        self.classes = tuple(meta.get("classes", "").split(",")) if meta.get("classes") else ()
        shape = self.session.get_inputs()[0].shape
        self.n_features = shape[1] if len(shape) == 2 and isinstance(shape[1], int) else None
        self.metadata = dict(meta)
        self.spec: TaskSpec | None = None
        if "task_spec" in meta:
            import json
            try:
                self.spec = TaskSpec.from_obj(json.loads(meta["task_spec"]))
            except (ValueError, MLError) as exc:
                raise ModelError(f"onnx: the task_spec metadata is not a task spec ({exc})") from None
        if self.spec is not None and self.spec.encoding is not None:
            self.n_features = self.spec.n_features

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.n_features is not None and (x.ndim != 2 or x.shape[1] != self.n_features):
            raise ModelError(f"x: expected shape (n, {self.n_features}), got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ModelError("features: NaN or infinite value")
        if self.spec is not None and self.spec.encoding is not None:
            return self.predict_columns(column_inputs(self.spec, x.astype(np.int64)))
        label, _ = self.session.run(["label", "scores"], {"x": x})
        return np.asarray(label, dtype=np.int64)

    def predict_columns(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        """Class indexes for a CSV task's raw columns (``{name: (n, 1) float64 or str array}``)."""
        try:
            label, _ = self.session.run(["label", "scores"], columns)
        except Exception as exc:  # noqa: BLE001 -- onnxruntime's own untyped errors (a missing input, a wrong dtype)
            raise ModelError(f"onnx: {type(exc).__name__}: {str(exc)[:200]}") from None
        return np.asarray(label, dtype=np.int64)


def column_inputs(spec: TaskSpec, X: np.ndarray) -> dict[str, np.ndarray]:
    """The ONNX inputs of a CSV task that stand for integer features X (exact: ``Encoding.decode``'s values):
    numeric columns x / 2^scale_bits (NaN where the indicator says missing), categorical ones the category name
    ('' for code 0, which encodes back to 0)."""
    from .encoding import CategoricalColumn
    enc = spec.encoding
    assert enc is not None
    out: dict[str, np.ndarray] = {}
    at = 0
    for c in enc.columns:
        v = X[:, at]
        if isinstance(c, CategoricalColumn):
            names = np.array(("",) + c.categories, dtype=object)
            out[c.name] = names[np.clip(v, 0, len(c.categories))].reshape(-1, 1)
        else:
            f = v.astype(np.float64) / float(1 << c.scale_bits)
            if c.indicator:
                f = np.where(X[:, at + 1] != 0, np.nan, f)
            out[c.name] = f.reshape(-1, 1)
        at += c.width
    return out


def agreement(onnx_bytes: bytes, model: Model, spec: TaskSpec, x_original: np.ndarray) -> tuple[int, int]:
    """(rows where onnxruntime and popchain's scoring predict the same class, rows). ``x_original``: rows in
    the task's original units (a CSV task: its integer features, which ``OnnxPredictor`` turns into cells)."""
    [(same, rows)] = agreement_parts(onnx_bytes, model, spec, [x_original])
    return same, rows


CHECK_CHUNK = 50_000    # rows per onnxruntime call: memory stays flat however many rows are checked


def agreement_parts(onnx_bytes: bytes, model: Model, spec: TaskSpec,
                    parts: list[np.ndarray]) -> list[tuple[int, int]]:
    """Per part (rows in original units; a CSV task: its integer features): (rows where onnxruntime and
    popchain's scoring predict the same class, rows). Every row of every part is checked — what the model
    card reports is exactly this."""
    from .score import predict
    from .task import quantise
    session = OnnxPredictor(onnx_bytes)
    out = []
    for x in parts:
        same = 0
        for i in range(0, x.shape[0], CHECK_CHUNK):
            chunk = x[i:i + CHECK_CHUNK]
            X = (np.asarray(chunk).astype(np.int64) if spec.encoding is not None
                 else quantise(chunk, spec.scale_bits, spec.max_abs))
            same += int(np.count_nonzero(predict(model, X) == session.predict(chunk)))
        out.append((same, int(x.shape[0])))
    return out
