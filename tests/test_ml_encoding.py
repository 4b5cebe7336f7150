"""CSV tasks as users have them (issue 22): numeric and categorical columns, missing values, the encoding
committed in the task spec and applied identically by load_csv, read_feature_csv (model predict), the holdout
file and the ONNX export; hostile encodings are refused with TaskError naming the field."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml.codec import pack, unpack_canonical
from ml.encoding import CategoricalColumn, Encoding, NumericColumn
from ml.errors import TaskError
from ml.model import DEFAULT_CAPS
from ml.onnx_export import OnnxPredictor, to_onnx
from ml.predictor import PopPredictor
from ml.score import predict
from ml.table import read_table
from ml.task import Dataset, TaskSpec, load_csv, read_feature_csv, write_feature_csv

ADULT = Path("/work/shared/data/adult.csv")
TEXT = """age, city ,score,label
31,Paris,0.5,yes
,Lyon,?,no
45,?,1.25,yes
27, Paris ,NA,no
60,Nice,-0.75,yes
"""


def _write(tmp_path: Path, text: str, name: str = "t.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_categorical_and_missing_values_become_committed_integers(tmp_path):
    ds = load_csv(_write(tmp_path, TEXT), "label")
    enc = ds.spec.encoding
    assert enc is not None and ds.spec.scale_bits == 0 and ds.spec.classes == ("no", "yes")
    age, city, score = enc.columns
    assert isinstance(age, NumericColumn) and age.scale_bits == 0 and age.indicator and age.fill == 38
    assert isinstance(city, CategoricalColumn) and city.categories == ("Paris", "Lyon", "Nice")  # by frequency
    # |score| <= 1.25 < 2^2: 18 fractional bits keep it under 2^20; its fill is the median, 0.5
    assert isinstance(score, NumericColumn) and score.scale_bits == 18 and score.indicator
    assert enc.feature_names() == ["age", "age:missing", "city", "score", "score:missing"]
    half = 1 << 17
    assert ds.X.tolist() == [[31, 0, 1, half, 0], [38, 1, 2, half, 1], [45, 0, 0, 5 * half // 2, 0],
                             [27, 0, 1, half, 1], [60, 0, 3, -3 * half // 2, 0]]
    assert TaskSpec.from_obj(ds.spec.to_obj()) == ds.spec
    assert unpack_canonical(pack(ds.spec.to_obj()), max_size=1 << 20, err=TaskError, field="s") == ds.spec.to_obj()


def test_predict_rows_are_read_by_name_in_any_order(tmp_path):
    ds = load_csv(_write(tmp_path, TEXT), "label")
    # reordered columns, an extra column, unknown and missing categories, no label column
    p = _write(tmp_path, "id,score,city,age\n7,0.5,Berlin,31\n8,,Lyon,\n", "rows.csv")
    X, y = read_feature_csv(p, ds.spec)
    assert y is None and X.tolist() == [[31, 0, 0, 1 << 17, 0], [38, 1, 2, 1 << 17, 1]]
    bad = _write(tmp_path, "age,city,score\nold,Paris,1\n", "bad.csv")
    with pytest.raises(TaskError, match=r"row 2, column 'age': non-numeric value 'old' in a numeric column"):
        read_feature_csv(bad, ds.spec)
    with pytest.raises(TaskError, match=r"columns \['score'\] are not in the header"):
        read_feature_csv(_write(tmp_path, "age,city\n1,Paris\n", "short.csv"), ds.spec)


def test_the_holdout_file_round_trips_exactly(tmp_path):
    ds = load_csv(_write(tmp_path, TEXT), "label")
    out = tmp_path / "holdout.csv"
    write_feature_csv(out, ds)
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["age", "city", "score", "label"] and rows[2][0] == "" and rows[3][1] == ""
    X, y = read_feature_csv(out, ds.spec)
    assert np.array_equal(X, ds.X) and np.array_equal(y, ds.y)


def test_a_column_can_be_forced_categorical(tmp_path):
    ds = load_csv(_write(tmp_path, "zip,label\n75001,a\n69001,b\n75001,a\n"), "label", categorical=("zip",))
    assert ds.spec.encoding.columns[0] == CategoricalColumn("zip", ("75001", "69001"))
    assert ds.X[:, 0].tolist() == [1, 2, 1]
    with pytest.raises(TaskError, match="--categorical"):
        load_csv(_write(tmp_path, "zip,label\n1,a\n2,b\n", "z.csv"), "label", categorical=("nope",))


@pytest.mark.skipif(not ADULT.exists(), reason="the shared UCI Adult file is not on this machine")
def test_uci_adult_as_published():
    ds = load_csv(ADULT, "income")
    enc = ds.spec.encoding
    assert len(ds) == 48_842 and ds.spec.n_features == 14 and ds.spec.classes == ("<=50K", ">50K")
    kinds = {c.name: type(c).__name__ for c in enc.columns}
    assert sum(k == "CategoricalColumn" for k in kinds.values()) == 8
    work = enc.columns[1]
    assert work.name == "workclass" and int((ds.X[:, 1] == 0).sum()) == 2_799   # "?" cells: missing
    assert int(np.bincount(ds.y)[1]) == 11_687


def test_onnx_export_applies_the_encoding_to_raw_cells(tmp_path):
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    from ml.export import from_sklearn
    from ml.onnx_export import column_inputs
    rng = np.random.default_rng(0)
    lines = ["n,c,label"]
    for i in range(400):
        n = "" if i % 7 == 0 else f"{rng.normal(3, 2):.3f}"
        c = ("?", "red", "green", "blue")[i % 4]
        lines.append(f"{n},{c},{'ab'[int(rng.random() < 0.3 + 0.1 * (i % 4))]}")
    ds = load_csv(_write(tmp_path, "\n".join(lines) + "\n"), "label")
    for est in (HistGradientBoostingClassifier(max_iter=20), LogisticRegression(max_iter=500)):
        model = from_sklearn(est.fit(ds.X.astype(float), ds.y), ds.spec)
        onnx = OnnxPredictor(to_onnx(model, ds.spec, DEFAULT_CAPS))
        ours = predict(model, ds.X)
        assert np.array_equal(onnx.predict(ds.X.astype(float)), ours)
        # raw cells straight from the file: NaN for a missing number, the text of a category
        table = read_table(tmp_path / "t.csv", "label", label_required=True)
        cells = {name: np.array(table.column(name), dtype=object).reshape(-1, 1) for name in table.columns}
        cells["n"] = np.array([np.nan if v == "" else float(v) for v in table.column("n")]).reshape(-1, 1)
        assert np.array_equal(onnx.predict_columns(cells), ours)
        assert set(column_inputs(ds.spec, ds.X)) == {"n", "c"}


def test_predictor_files_keep_the_encoding(tmp_path):
    from sklearn.tree import DecisionTreeClassifier

    from ml.export import from_sklearn
    ds = load_csv(_write(tmp_path, TEXT), "label")
    pred = PopPredictor(from_sklearn(DecisionTreeClassifier().fit(ds.X.astype(float), ds.y), ds.spec), ds.spec)
    pred.save(tmp_path / "m.popmodel")
    loaded = PopPredictor.load(tmp_path / "m.popmodel")
    assert loaded.spec == ds.spec and np.array_equal(loaded.predict(ds.X), ds.y)
    assert np.array_equal(loaded.predict_rows([{"age": "31", "city": "Paris", "score": "0.5"}]), ds.y[:1])


ENC = Encoding("label", ("", "?"), (NumericColumn("a", 2, -10, 10, 0, True), CategoricalColumn("b", ("x", "y"))))


@pytest.mark.parametrize("mutate,match", [
    (lambda o: o.__setitem__(0, 2), "encoding.version"),
    (lambda o: o[3][0].__setitem__(5, 11), "fill"),                       # fill 11 > hi 10
    (lambda o: o[3][0].__setitem__(3, 11), "hi"),                         # lo 11 > hi 10
    (lambda o: o[3][0].__setitem__(2, 25), "scale_bits"),
    (lambda o: o[3][1].__setitem__(1, "a"), "distinct"),
    (lambda o: o[3][1].__setitem__(1, "label"), "distinct"),
    (lambda o: o[3][1][2].append("x"), "duplicate categories"),
    (lambda o: o[3][1][2].append("?"), "missing token"),
    (lambda o: o[3][1][2].append(" z"), "whitespace"),
    (lambda o: o[3][0].__setitem__(0, "int"), "kind"),
    (lambda o: o[3][1][2].extend(str(i) for i in range(5000)), "cap"),
    (lambda o: o.__setitem__(3, []), "1..2048 columns"),
    (lambda o: o[3][0].__setitem__(6, 2), "indicator"),
])
def test_hostile_encodings_are_refused_naming_the_field(mutate, match):
    obj = ENC.to_obj()
    assert Encoding.from_obj(obj) == ENC
    mutate(obj)
    with pytest.raises(TaskError, match=match):
        Encoding.from_obj(obj)


def test_a_spec_must_agree_with_its_encoding():
    with pytest.raises(TaskError, match="3 features"):
        TaskSpec("t", 2, 0, ("a", "b"), 10, encoding=ENC)
    with pytest.raises(TaskError, match="scale_bits"):
        TaskSpec("t", 3, 4, ("a", "b"), 10, encoding=ENC)
    with pytest.raises(TaskError, match="exceed max_abs"):
        TaskSpec("t", 3, 0, ("a", "b"), 9, encoding=ENC)
    with pytest.raises(TaskError, match="exceeds the cap of 6"):
        TaskSpec.from_obj(["t", 3, 0, ["a", "b"], 10, ENC.to_obj(), 1])
    with pytest.raises(TaskError, match="expected 5 items"):
        TaskSpec.from_obj(["t", 3, 0, ["a", "b"]])


_leaf = st.one_of(st.integers(-2**40, 2**40), st.text(max_size=6), st.binary(max_size=4))
_objs = st.recursive(_leaf, lambda inner: st.lists(inner, max_size=6), max_leaves=40)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obj=_objs)
def test_random_objects_decode_or_raise_task_error(obj):
    for candidate in (obj, [1, "label", ["?"], obj], [1, "label", [], [obj]]):
        try:
            Encoding.from_obj(candidate)
        except TaskError:
            pass


def test_datasets_of_an_encoded_spec_are_bounded():
    spec = TaskSpec("t", 3, 0, ("a", "b"), 10, encoding=ENC)
    with pytest.raises(TaskError, match="max_abs"):
        Dataset(spec, np.array([[11, 0, 1]], dtype=np.int64), np.array([0]))


def test_model_predict_takes_raw_csv_rows_with_a_popmodel_and_an_onnx_file(tmp_path):
    """`popchain model predict` on a CSV task: the holdout file as written (text categories, blank cells), by
    a .popmodel and by its ONNX export, give the same predictions and the task's own label column's accuracy."""
    import json
    import subprocess
    import sys

    from sklearn.ensemble import HistGradientBoostingClassifier

    from ml.export import from_sklearn
    from tests.test_cli_e2e import _env
    ds = load_csv(_write(tmp_path, TEXT * 1 + "\n".join(TEXT.splitlines()[1:]) + "\n"), "label")
    model = from_sklearn(HistGradientBoostingClassifier(max_iter=5, min_samples_leaf=1).fit(ds.X.astype(float),
                                                                                              ds.y), ds.spec)
    PopPredictor(model, ds.spec).save(tmp_path / "m.popmodel")
    (tmp_path / "m.onnx").write_bytes(to_onnx(model, ds.spec, DEFAULT_CAPS))
    write_feature_csv(tmp_path / "holdout.csv", ds)
    outs = []
    for f in ("m.popmodel", "m.onnx"):
        proc = subprocess.run([sys.executable, "-m", "cli", "model", "predict", "--model", str(tmp_path / f),
                               "--input", str(tmp_path / "holdout.csv"), "--out", str(tmp_path / f"{f}.csv"),
                               "--json"], capture_output=True, text=True, env=_env(), check=False, timeout=120)
        assert proc.returncode == 0, proc.stderr
        outs.append((json.loads(proc.stdout), (tmp_path / f"{f}.csv").read_text()))
    (a, pa), (b, pb) = outs
    assert pa == pb and a["rows"] == len(ds) and a["accuracy"] == b["accuracy"]
    assert a["accuracy"] == float(np.mean(predict(model, ds.X) == ds.y))
