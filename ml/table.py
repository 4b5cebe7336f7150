"""Reading a CSV file as users have it: a header row, then rows of text cells (numbers, category names, blanks).

``read_table`` returns the header and every row's cells, stripped of surrounding whitespace, exactly as text:
what a cell *means* (a number, a category, a missing value) is decided by the task's encoding (``ml.encoding``),
never here. Every error is a ``TaskError`` naming the file and, where there is one, the row (1-based, the header
is row 1) and the column.

What it does NOT do: parse numbers, decide which cells are missing, or hold the whole file twice (rows are
kept as lists of str, the label column split off).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from .errors import TaskError

MAX_COLUMNS = 4096
MAX_CELL_BYTES = 1 << 12        # one cell of a CSV row (a long free-text cell is a data error, not a feature)


@dataclass(frozen=True)
class Table:
    """A CSV file's content: feature columns (header order, the label column removed) and their text cells."""
    path: str
    columns: tuple[str, ...]          # feature column names, in file order
    rows: list[list[str]]             # one list of stripped cells per data row, aligned with ``columns``
    labels: list[str] | None          # the label column's cells (None: the file has no label column)
    row_numbers: list[int]            # file row number of each data row (for error messages)

    def __len__(self) -> int:
        return len(self.rows)

    def column(self, name: str) -> list[str]:
        i = self.columns.index(name)
        return [r[i] for r in self.rows]

    def where(self, rowpos: int, column: str) -> str:
        """``file: row N, column 'c'`` for error messages."""
        return f"{self.path}: row {self.row_numbers[rowpos]}, column {column!r}"


def read_table(path: str | Path, label_column: str | None, *, label_required: bool,
               max_rows: int = 1_000_000) -> Table:
    """The header and cells of a CSV file. Blank lines are skipped; every other row must have as many cells
    as the header. ``label_column`` is split off (a missing label is an error: a row without its class can be
    neither trained nor scored); with ``label_required`` False a file without that column is fine."""
    path = Path(path)
    try:
        with path.open(newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise TaskError(f"{path}: empty file (a header row is required)")
            header = [h.strip() for h in header]
            if len(header) > MAX_COLUMNS:
                raise TaskError(f"{path}: {len(header)} columns; at most {MAX_COLUMNS}")
            dupes = sorted({h for h in header if header.count(h) > 1})
            if dupes:
                raise TaskError(f"{path}: duplicate column names in the header: {dupes[:5]}")
            if label_column is not None and label_column not in header and label_required:
                raise TaskError(f"{path}: label column {label_column!r} not in header {header[:20]}")
            li = header.index(label_column) if label_column in header else -1
            names = tuple(h for i, h in enumerate(header) if i != li)
            if not names:
                raise TaskError(f"{path}: no feature columns besides {label_column!r}")
            if "" in names:
                raise TaskError(f"{path}: a column of the header has no name")
            rows: list[list[str]] = []
            labels: list[str] = []
            numbers: list[int] = []
            for rownum, row in enumerate(reader, start=2):
                if not row or all(not c.strip() for c in row):
                    continue
                if len(rows) >= max_rows:
                    raise TaskError(f"{path}: more than {max_rows:,} rows")
                if len(row) != len(header):
                    raise TaskError(f"{path}: row {rownum} has {len(row)} columns, header has {len(header)}")
                cells = [c.strip() for c in row]
                for ci, cell in enumerate(cells):
                    if len(cell) > MAX_CELL_BYTES:
                        raise TaskError(f"{path}: row {rownum}, column {header[ci]!r}: a cell of {len(cell):,} "
                                        f"characters (at most {MAX_CELL_BYTES:,})")
                if li >= 0:
                    label = cells.pop(li)
                    if not label:
                        raise TaskError(f"{path}: row {rownum}, column {label_column!r}: missing label")
                    labels.append(label)
                rows.append(cells)
                numbers.append(rownum)
    except OSError as exc:
        raise TaskError(f"{path}: cannot read ({exc})") from None
    except UnicodeDecodeError:
        raise TaskError(f"{path}: not a UTF-8 text file") from None
    except csv.Error as exc:
        raise TaskError(f"{path}: not a CSV file ({exc})") from None
    if not rows:
        raise TaskError(f"{path}: no data rows")
    return Table(str(path), names, rows, labels if li >= 0 else None, numbers)
