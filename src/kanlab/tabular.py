"""Reading tables for the command line: CSV/TSV, .npz and (with pyarrow) .parquet.

Every loader returns a :class:`Table` (it unpacks as ``columns, data``: names and a float64
array (rows, columns)) and raises ValueError with the file, row and column of the first problem:
a missing header, ragged rows. Text columns (ids, names) are kept aside as NaN in ``data`` and
listed in ``Table.text``; :func:`select_columns` refuses one only when the run uses it, and
leaves them out of the default features with a note.
"""
from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Table", "load_table", "select_columns"]


@dataclass
class Table:
    """Column names, float64 data (NaN in text columns) and the text columns: for each, the
    first cell that is not a number, as ``(file line, cell)``."""

    columns: list
    data: np.ndarray
    text: dict = field(default_factory=dict)

    def __iter__(self):  # columns, data = load_table(path)
        return iter((self.columns, self.data))


def load_table(path) -> Table:
    """Load a table from ``path`` (.csv, .tsv, .txt, .npz or .parquet)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such data file: {path}")
    if os.path.isdir(path):
        raise ValueError(f"{path} is a folder: give a .csv, .npz or .parquet file")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npz":
        return Table(*_load_npz(path))
    if ext == ".parquet":
        return Table(*_load_parquet(path))
    return Table(*_load_csv(path))


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _encoding(path) -> str:
    """UTF-8 (with or without a byte-order mark), else Latin-1, which reads any bytes: the
    numbers are ASCII either way, only header and text cells can differ."""
    with open(path, "rb") as fh:
        raw = fh.read()
    try:
        raw.decode("utf-8-sig")
        return "utf-8-sig"
    except UnicodeDecodeError:
        return "latin-1"


def _load_csv(path):
    with open(path, newline="", encoding=_encoding(path)) as fh:
        sample = fh.read(65536)
        fh.seek(0)
        if not sample.strip():
            raise ValueError(f"{path} is empty")
        try:
            dialect = csv.Sniffer().sniff(sample, delimiters=",;\t ")
        except csv.Error:
            dialect = csv.excel
        reader = csv.reader(fh, dialect)
        rows, lines = [], []  # non-blank rows and the file line each starts on
        for r in reader:
            if any(c.strip() for c in r):
                rows.append(r)
                lines.append(reader.line_num)
    header = [c.strip() for c in rows[0]]
    if all(_is_number(c) for c in header if c):
        raise ValueError(f"{path}: the first row must name the columns (it holds numbers: "
                         f"{', '.join(header[:4])}...)")
    if any(not c for c in header):
        raise ValueError(f"{path}: column {header.index('') + 1} of the header has no name")
    dup = sorted({c for c in header if header.count(c) > 1})
    if dup:
        raise ValueError(f"{path}: column names must be unique, repeated: {dup}")
    body = rows[1:]
    if not body:
        raise ValueError(f"{path} has a header but no data rows")
    data = np.empty((len(body), len(header)), dtype=np.float64)
    text = {}
    for r, row in enumerate(body):
        if len(row) != len(header):
            raise ValueError(f"{path}, line {lines[r + 1]}: {len(row)} fields but the header "
                             f"has {len(header)}")
        for c, cell in enumerate(row):
            cell = cell.strip()
            if cell == "" or cell.lower() in ("na", "nan", "null", "none"):
                data[r, c] = math.nan
                continue
            try:
                data[r, c] = float(cell)
            except ValueError:
                data[r, c] = math.nan
                text.setdefault(header[c], (lines[r + 1], cell))
    return header, data, text


def _load_npz(path):
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as err:
        raise ValueError(f"{path}: cannot read it as .npz without pickles ({err})") from None
    except Exception as err:  # zipfile errors on a damaged file
        raise ValueError(f"{path} is not a readable .npz file ({err})") from None
    if "X" in arrays:
        X = np.asarray(arrays["X"], dtype=np.float64)
        if X.ndim != 2:
            raise ValueError(f"{path}: X must be 2-D (rows, features), got shape {X.shape}")
        names = [str(v) for v in arrays["feature_names"]] if "feature_names" in arrays else \
            [f"x_{i + 1}" for i in range(X.shape[1])]
        if len(names) != X.shape[1]:
            raise ValueError(f"{path}: feature_names has {len(names)} names for {X.shape[1]} columns")
        cols, data = names, [X]
        if "y" in arrays:
            y = np.asarray(arrays["y"], dtype=np.float64).reshape(len(X), -1)
            if y.shape[1] != 1:
                raise ValueError(f"{path}: y must have one column, got shape {arrays['y'].shape}")
            cols, data = names + ["y"], [X, y]
        return cols, np.concatenate(data, 1)
    cols, data = [], []
    for k, v in arrays.items():
        v = np.asarray(v)
        if v.ndim != 1 or not np.issubdtype(v.dtype, np.number):
            raise ValueError(f"{path}: array {k!r} is not a 1-D numeric column; store either "
                             "X (and y) or one 1-D array per column")
        cols.append(k)
        data.append(v.astype(np.float64))
    if not data:
        raise ValueError(f"{path} holds no arrays")
    if len({len(v) for v in data}) != 1:
        raise ValueError(f"{path}: columns have different lengths")
    return cols, np.stack(data, 1)


def _load_parquet(path):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError("reading .parquet needs pyarrow: pip install pyarrow (or use CSV)") from None
    table = pq.read_table(path)
    cols, data, text = [], [], {}
    for name in table.column_names:
        v = np.asarray(table.column(name).to_numpy(zero_copy_only=False))
        cols.append(str(name))
        if not np.issubdtype(v.dtype, np.number):
            text[str(name)] = (None, str(v[0]) if len(v) else "")
            v = np.full(len(v), np.nan)
        data.append(np.asarray(v, dtype=np.float64))
    return cols, np.stack(data, 1), text


def _text_error(path, name, where):
    line, cell = where
    at = f", line {line}" if line is not None else ""
    return ValueError(f"{path}{at}, column {name!r}: {cell!r} is not a number; only numeric "
                      f"columns can be features or the target (name the ones to use with "
                      f"--features)")


def select_columns(columns, data, target=None, features=None, path="data", text=None,
                   note=None):
    """Split a table into (feature names, X, y): ``target`` by name (y is None without one);
    features by name, default every other numeric column (text columns in ``text`` are then
    left out, reported through ``note(message)``). A used text column or missing values are
    an error."""
    text = dict(text or {})
    if target is not None and target not in columns:
        raise ValueError(f"{path} has no column {target!r}; columns: {', '.join(columns)}")
    if features is None:
        features = [c for c in columns if c != target and c not in text]
        skipped = [c for c in columns if c != target and c in text]
        if skipped and note is not None:
            note(f"left out text column(s) {', '.join(repr(c) for c in skipped)} (not numbers)")
    for name in list(features) + ([target] if target is not None else []):
        if name in text:
            raise _text_error(path, name, text[name])
    missing = [f for f in features if f not in columns]
    if missing:
        raise ValueError(f"{path} lacks feature column(s) {missing}; columns: {', '.join(columns)}")
    if target is not None and target in features:
        raise ValueError(f"the target {target!r} cannot also be a feature")
    if not features:
        raise ValueError(f"{path} has no feature columns besides the target {target!r}")
    X = data[:, [columns.index(f) for f in features]]
    y = data[:, columns.index(target)] if target is not None else None
    for name, col in [(f, X[:, i]) for i, f in enumerate(features)] + (
            [(target, y)] if y is not None else []):
        bad = ~np.isfinite(col)
        if bad.any():
            raise ValueError(f"{path}: column {name!r} has {int(bad.sum())} missing or non-finite "
                             f"value(s), first on data row {int(np.argmax(bad)) + 1}: remove or "
                             "impute them")
    return list(features), X, y
