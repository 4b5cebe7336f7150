"""The column encoding of a CSV task (PROTOCOL §5.7): how a row as users have it — numbers, category names,
blanks — becomes the task's integer features. It is part of the committed task spec, so scoring, ``model
predict``, the ONNX export and every miner apply the very same integers to the very same rows.

Encoding (canonical msgpack, inside the spec): ``[1, label, [missing token…], [column…]]`` with a column either
  ``["num", name, scale_bits, lo, hi, fill, indicator]`` — a cell that is a missing token becomes ``fill`` (and, with
      indicator = 1, a 0/1 feature right after it says it was missing); any other cell is a decimal number v, and the
      feature is ``clip(round_half_even(v · 2^scale_bits), lo, hi)``;
  ``["cat", name, [category…]]`` — the feature is 1 + the index of the cell in the list, 0 for a missing token or
      a category not in the list.
Features are the columns' features in column order. A row's cells are stripped of surrounding whitespace first
(``ml.table``). Columns are found by name, so a file may order its columns differently or carry extra ones.

``fit_encoding`` chooses an encoding from a whole table at task creation (label-free: category order = by
frequency over every row, then by name; fill = the median; scale = as many fractional bits as keep |x| ≤ ~2^20,
0 for integer columns). What it does NOT do: read files (ml.table), split rows or see labels.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .codec import check_int, check_list, check_str
from .errors import TaskError
from .table import Table

ENCODING_VERSION = 1
NUMERIC, CATEGORICAL = "num", "cat"
MAX_COLUMNS = 2048               # encoded columns (with indicators at most 4096 features: ml.task.MAX_FEATURES)
MAX_CATEGORIES = 4096            # per categorical column; the rarest beyond it are encoded as 0 ("other")
MAX_TOTAL_CATEGORIES = 1 << 16
MAX_NAME_BYTES = 128             # column, label and category names
MAX_TOKENS, MAX_TOKEN_BYTES = 16, 16
MAX_SCALE_BITS = 24
MAX_ABS_LIMIT = (1 << 31) - 1    # = ml.task.MAX_ABS_LIMIT: features fit int32
TARGET_BITS = 20                 # fit_encoding's scale keeps a non-integer column's magnitudes near 2^20
DEFAULT_MISSING = ("", "?", "NA", "N/A", "n/a", "NaN", "nan", "NULL", "null", "None", "#N/A", "<NA>")


@dataclass(frozen=True)
class NumericColumn:
    name: str
    scale_bits: int
    lo: int
    hi: int
    fill: int
    indicator: bool

    @property
    def width(self) -> int:
        return 2 if self.indicator else 1


@dataclass(frozen=True)
class CategoricalColumn:
    name: str
    categories: tuple[str, ...]

    @property
    def width(self) -> int:
        return 1


Column = NumericColumn | CategoricalColumn


@dataclass(frozen=True)
class Encoding:
    label: str
    missing: tuple[str, ...]
    columns: tuple[Column, ...]

    def __post_init__(self) -> None:
        _check_name(self.label, "encoding.label")
        if len(self.missing) > MAX_TOKENS or len(set(self.missing)) != len(self.missing):
            raise TaskError(f"encoding.missing: at most {MAX_TOKENS} distinct tokens")
        for i, t in enumerate(self.missing):
            check_str(t, MAX_TOKEN_BYTES, TaskError, f"encoding.missing[{i}]")
            if t != t.strip():
                raise TaskError(f"encoding.missing[{i}]: surrounding whitespace (cells are stripped)")
        if not 1 <= len(self.columns) <= MAX_COLUMNS:
            raise TaskError(f"encoding.columns: need 1..{MAX_COLUMNS} columns, got {len(self.columns)}")
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names) or self.label in names:
            raise TaskError("encoding.columns: column names must be distinct and differ from the label")
        missing = set(self.missing)
        total = 0
        for i, c in enumerate(self.columns):
            f = f"encoding.columns[{i}]"
            _check_name(c.name, f"{f}.name")
            if isinstance(c, NumericColumn):
                check_int(c.scale_bits, 0, MAX_SCALE_BITS, TaskError, f"{f}.scale_bits")
                check_int(c.lo, -MAX_ABS_LIMIT, MAX_ABS_LIMIT, TaskError, f"{f}.lo")
                check_int(c.hi, c.lo, MAX_ABS_LIMIT, TaskError, f"{f}.hi")
                check_int(c.fill, c.lo, c.hi, TaskError, f"{f}.fill")
                if type(c.indicator) is not bool:
                    raise TaskError(f"{f}.indicator: expected a bool")
            else:
                if len(c.categories) > MAX_CATEGORIES:
                    raise TaskError(f"{f}.categories: {len(c.categories)} exceeds the cap of {MAX_CATEGORIES}")
                total += len(c.categories)
                for j, cat in enumerate(c.categories):
                    check_str(cat, MAX_NAME_BYTES, TaskError, f"{f}.categories[{j}]")
                    if not cat or cat != cat.strip() or cat in missing:
                        raise TaskError(f"{f}.categories[{j}]: {cat!r} is empty, a missing token or has "
                                        "surrounding whitespace, so no cell could ever be it")
                if len(set(c.categories)) != len(c.categories):
                    raise TaskError(f"{f}.categories: duplicate categories")
        if total > MAX_TOTAL_CATEGORIES:
            raise TaskError(f"encoding: {total} categories in all exceeds the cap of {MAX_TOTAL_CATEGORIES}")

    # ------------------------------------------------------------ shape

    @property
    def width(self) -> int:
        """Number of integer features (a numeric column with an indicator counts twice)."""
        return sum(c.width for c in self.columns)

    @property
    def max_abs(self) -> int:
        """max |feature| any row can have under this encoding."""
        m = 1
        for c in self.columns:
            m = max(m, abs(c.lo), abs(c.hi)) if isinstance(c, NumericColumn) else max(m, len(c.categories))
        return m

    def feature_names(self) -> list[str]:
        out = []
        for c in self.columns:
            out.append(c.name)
            if isinstance(c, NumericColumn) and c.indicator:
                out.append(f"{c.name}:missing")
        return out

    # ------------------------------------------------------------ canonical form

    def to_obj(self) -> list[Any]:
        cols: list[Any] = []
        for c in self.columns:
            if isinstance(c, NumericColumn):
                cols.append([NUMERIC, c.name, c.scale_bits, c.lo, c.hi, c.fill, int(c.indicator)])
            else:
                cols.append([CATEGORICAL, c.name, list(c.categories)])
        return [ENCODING_VERSION, self.label, list(self.missing), cols]

    @classmethod
    def from_obj(cls, obj: Any) -> Encoding:
        f = check_list(obj, 4, TaskError, "encoding")
        check_int(f[0], ENCODING_VERSION, ENCODING_VERSION, TaskError, "encoding.version")
        tokens = check_list(f[2], None, TaskError, "encoding.missing", max_len=MAX_TOKENS)
        cols_obj = check_list(f[3], None, TaskError, "encoding.columns", max_len=MAX_COLUMNS)
        cols: list[Column] = []
        total = 0
        for i, c in enumerate(cols_obj):
            field = f"encoding.columns[{i}]"
            item = check_list(c, None, TaskError, field, max_len=7)
            kind = check_str(item[0] if item else None, 3, TaskError, f"{field}.kind")
            if kind == NUMERIC:
                check_list(item, 7, TaskError, field)
                cols.append(NumericColumn(
                    check_str(item[1], MAX_NAME_BYTES, TaskError, f"{field}.name"),
                    check_int(item[2], 0, MAX_SCALE_BITS, TaskError, f"{field}.scale_bits"),
                    check_int(item[3], -MAX_ABS_LIMIT, MAX_ABS_LIMIT, TaskError, f"{field}.lo"),
                    check_int(item[4], -MAX_ABS_LIMIT, MAX_ABS_LIMIT, TaskError, f"{field}.hi"),
                    check_int(item[5], -MAX_ABS_LIMIT, MAX_ABS_LIMIT, TaskError, f"{field}.fill"),
                    bool(check_int(item[6], 0, 1, TaskError, f"{field}.indicator"))))
            elif kind == CATEGORICAL:
                check_list(item, 3, TaskError, field)
                cats = check_list(item[2], None, TaskError, f"{field}.categories", max_len=MAX_CATEGORIES)
                total += len(cats)
                if total > MAX_TOTAL_CATEGORIES:       # before decoding any more strings
                    raise TaskError(f"encoding: more than {MAX_TOTAL_CATEGORIES} categories in all")
                cols.append(CategoricalColumn(
                    check_str(item[1], MAX_NAME_BYTES, TaskError, f"{field}.name"),
                    tuple(check_str(s, MAX_NAME_BYTES, TaskError, f"{field}.categories[{j}]")
                          for j, s in enumerate(cats))))
            else:
                raise TaskError(f"{field}.kind: {kind!r} is neither {NUMERIC!r} nor {CATEGORICAL!r}")
        return cls(check_str(f[1], MAX_NAME_BYTES, TaskError, "encoding.label"),
                   tuple(check_str(t, MAX_TOKEN_BYTES, TaskError, f"encoding.missing[{i}]")
                         for i, t in enumerate(tokens)), tuple(cols))

    # ------------------------------------------------------------ applying it

    def encode(self, table: Table) -> np.ndarray:
        """The integer features (int64, (rows, width)) of a table that has every column of the encoding."""
        absent = [c.name for c in self.columns if c.name not in table.columns]
        if absent:
            raise TaskError(f"{table.path}: the task's columns {absent[:8]} are not in the header "
                            f"(it has {list(table.columns)[:20]})")
        X = np.empty((len(table), self.width), dtype=np.int64)
        missing = frozenset(self.missing)
        at = 0
        for c in self.columns:
            cells = table.column(c.name)
            if isinstance(c, CategoricalColumn):
                index = {cat: j + 1 for j, cat in enumerate(c.categories)}
                X[:, at] = [index.get(cell, 0) for cell in cells]
                at += 1
                continue
            is_missing = np.fromiter((cell in missing for cell in cells), dtype=bool, count=len(cells))
            values = np.zeros(len(cells), dtype=np.float64)
            for i, cell in enumerate(cells):
                if not is_missing[i]:
                    values[i] = _number(cell, table, i, c.name)
            X[:, at] = np.where(is_missing, c.fill, quantise_column(values, c))
            if c.indicator:
                X[:, at + 1] = is_missing
            at += c.width
        return X

    def decode(self, X: np.ndarray) -> list[list[str]]:
        """Cells that encode back to exactly ``X`` (the holdout.csv a task owner gets): numbers in decimal
        (exact: x / 2^scale_bits is a binary fraction), category names, and a missing token for code 0 or a
        set indicator."""
        token = self.missing[0] if self.missing else ""
        cols: list[list[str]] = []
        at = 0
        for c in self.columns:
            v = X[:, at]
            if isinstance(c, CategoricalColumn):
                names = (token,) + c.categories
                cols.append([names[int(k)] if 0 <= k <= len(c.categories) else token for k in v])
            else:
                text = [str(int(x)) if c.scale_bits == 0 else repr(float(x) / float(1 << c.scale_bits)) for x in v]
                if c.indicator:
                    text = [token if m else t for t, m in zip(text, X[:, at + 1])]
                cols.append(text)
            at += c.width
        return [list(r) for r in zip(*cols)]

    def describe(self) -> list[str]:
        """One line per column for the task owner (what genesis/task create print)."""
        out = []
        for c in self.columns:
            if isinstance(c, NumericColumn):
                scale = f"x 2^{c.scale_bits}, " if c.scale_bits else ""
                miss = f"; missing -> {c.fill} + indicator" if c.indicator else ""
                out.append(f"{c.name}: numeric ({scale}{c.lo}..{c.hi}{miss})")
            else:
                shown = ", ".join(c.categories[:4]) + (", ..." if len(c.categories) > 4 else "")
                out.append(f"{c.name}: categorical, {len(c.categories)} categories ({shown}); missing/other -> 0")
        return out


def _check_name(name: str, field: str) -> None:
    check_str(name, MAX_NAME_BYTES, TaskError, field)
    if not name or name != name.strip():
        raise TaskError(f"{field}: {name!r} must be non-empty without surrounding whitespace")


def _number(cell: str, table: Table, i: int, column: str) -> float:
    try:
        v = float(cell)
    except ValueError:
        raise TaskError(f"{table.where(i, column)}: non-numeric value {cell!r} in a numeric column") from None
    if not math.isfinite(v):
        raise TaskError(f"{table.where(i, column)}: non-finite value {cell!r}")
    return v


def quantise_column(values: np.ndarray, c: NumericColumn) -> np.ndarray:
    """clip(round_half_even(v · 2^scale_bits), lo, hi) as int64 (scaling by a power of two is exact; the clip
    happens in float64 first, so a huge v cannot overflow the cast)."""
    q = np.rint(np.asarray(values, dtype=np.float64) * float(1 << c.scale_bits))
    return np.clip(q, c.lo, c.hi).astype(np.int64)


# ---------------------------------------------------------------- choosing an encoding at task creation


def _parse_numeric(cells: Sequence[str], missing: frozenset[str]) -> np.ndarray | None:
    """The column's values (NaN where missing), or None if some non-missing cell is not a finite number."""
    out = np.full(len(cells), np.nan)
    seen = False
    for i, cell in enumerate(cells):
        if cell in missing:
            continue
        try:
            v = float(cell)
        except ValueError:
            return None
        if not math.isfinite(v):
            return None
        out[i] = v
        seen = True
    return out if seen else None


def _auto_scale(values: np.ndarray) -> int:
    if np.all(values == np.rint(values)):
        return 0
    top = float(np.abs(values).max())
    return max(0, min(MAX_SCALE_BITS, TARGET_BITS - max(0, math.ceil(math.log2(top + 1.0)))))


def fit_encoding(table: Table, label: str, *, categorical: Sequence[str] = (), scale_bits: int | None = None,
                 missing: Sequence[str] = DEFAULT_MISSING) -> Encoding:
    """An encoding for ``table``: a column is numeric when every non-missing cell is a finite number (unless
    named in ``categorical``), else categorical. ``scale_bits`` forces one scale on every numeric column."""
    unknown = sorted(set(categorical) - set(table.columns))
    if unknown:
        raise TaskError(f"--categorical: {unknown} not among the columns {list(table.columns)[:20]}")
    tokens = frozenset(missing)
    cols: list[Column] = []
    for name in table.columns:
        cells = table.column(name)
        values = None if name in categorical else _parse_numeric(cells, tokens)
        if values is None:
            counts = Counter(c for c in cells if c not in tokens)
            ordered = sorted(counts, key=lambda v: (-counts[v], v))[:MAX_CATEGORIES]
            cols.append(CategoricalColumn(name, tuple(ordered)))
            continue
        present = values[~np.isnan(values)]
        s = _auto_scale(present) if scale_bits is None else scale_bits
        q = np.clip(np.rint(present * float(1 << s)), -MAX_ABS_LIMIT, MAX_ABS_LIMIT).astype(np.int64)
        lo, hi = int(q.min()), int(q.max())
        fill = int(np.clip(np.rint(np.median(q)), lo, hi))
        cols.append(NumericColumn(name, s, lo, hi, fill, bool(present.size < len(cells))))
    return Encoding(label, tuple(missing), tuple(cols))
