"""CSV and Parquet tables through pyarrow, into one preallocated column-major float64 buffer.

CSV is streamed block by block (the buffer sized from the first block); Parquet is read column by
column (the row count is in its footer). Memory peaks near one copy of the numeric values: pyarrow's
whole-table ``read_csv`` peaked at 1.9 GB for a 1 GB CSV here, a one-row-group Parquet file read by
batches at 1.25 GB (BENCHMARKS.md).

Numeric columns become float64 arrays (nulls as NaN); string columns are counted, not kept: a
column whose values are mostly numbers but not all is a mixed-type finding (KGD102), a text column
is reported and left out of the numeric checks. CSV is read with quoted newlines allowed and a UTF-8
BOM skipped; a column whose type changes after the first block is re-read as text. The label column
(``--label``, else one named label / target / class / y) may hold integers or class names.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from kerasguard.data.dataset import Dataset, FloatArray, check_size, labels_from
from kerasguard.data.ids import finding
from kerasguard.data.report import shown
from kerasguard.errors import DataError
from kerasguard.findings import Location

LABEL_NAMES = ("label", "labels", "target", "class", "y")
_NUMBER = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"
_MAX_RESTARTS = 64
_BLOCK = 4 << 20
#: Largest table file read (a CSV of short numbers can hold ~8x its size in float64 values).
MAX_TABLE_BYTES = 2 << 30


class _TextColumn:
    """Counts of a string column: how many values, how many look like numbers, a few that do not."""

    def __init__(self) -> None:
        self.values = 0
        self.numeric = 0
        self.examples: list[str] = []

    def add(self, column: Any) -> None:
        import pyarrow.compute as pc

        column = column.cast("string")
        valid = len(column) - column.null_count
        if valid == 0:
            return
        numeric = pc.match_substring_regex(column, _NUMBER)
        self.values += valid
        self.numeric += int(pc.sum(numeric).as_py() or 0)
        if len(self.examples) < 3:
            for value, is_num in zip(column.to_pylist(), numeric.to_pylist(), strict=True):
                if value is not None and not is_num and len(self.examples) < 3:
                    self.examples.append(value)


def _is_numeric(kind: Any) -> bool:
    import pyarrow as pa

    return bool(
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_null(kind)
    )


def rows_hint(size: int, first_batch_rows: int) -> int:
    """Expected row count of a CSV: its size over the bytes of its first block, times that block's rows."""
    return max(first_batch_rows, -(-size // _BLOCK) * first_batch_rows)


def _has_quotes(path: Path) -> bool:
    with path.open("rb") as fh:
        while chunk := fh.read(16 << 20):
            if b'"' in chunk:
                return True
    return False


def _batches(path: Path, text_columns: set[str]) -> tuple[list[str], Any]:
    """(column names, an iterator of record batches)."""
    import pyarrow.csv as pacsv

    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=_BLOCK),
        # a newline can only sit inside a value if the file quotes; without quotes, blocks parse in parallel
        parse_options=pacsv.ParseOptions(newlines_in_values=_has_quotes(path)),
        convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(text_columns, "string")),
    )
    return list(reader.schema.names), reader


def read_table(path: Path, *, label: str | None = None) -> Dataset:
    """Read a CSV or Parquet table; restart with a column as text when its type changes mid-file."""
    import pyarrow as pa

    name = str(path)
    if path.suffix.lower() == ".parquet":
        try:
            return _read_parquet(path, label)
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"{name}: not a readable table: {shown(exc, 300)}") from None
    text_columns: set[str] = set()
    for _ in range(_MAX_RESTARTS):
        try:
            return _read(path, label, text_columns)
        except pa.ArrowInvalid as exc:
            match = re.search(r"In CSV column #(\d+)", str(exc))
            if match is None or path.suffix.lower() == ".parquet":
                raise DataError(f"{name}: not a readable table: {shown(exc, 300)}") from None
            names = _header_names(path)
            index = int(match.group(1))
            if index >= len(names) or names[index] in text_columns:
                raise DataError(f"{name}: not a readable table: {shown(exc, 300)}") from None
            text_columns.add(names[index])
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"{name}: not a readable table: {shown(exc, 300)}") from None
    raise DataError(f"{name}: too many columns change type after the first block")


def _header_names(path: Path) -> list[str]:
    import pyarrow.csv as pacsv

    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=_BLOCK),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
    )
    return list(reader.schema.names)


def _read(path: Path, label: str | None, text_columns: set[str]) -> Dataset:
    import pyarrow as pa
    import pyarrow.compute as pc

    name = str(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DataError(f"{name}: cannot read: {exc.strerror or exc}") from None
    if size > MAX_TABLE_BYTES:
        raise DataError(
            f"{name}: {size} bytes is more than kerasguard reads ({MAX_TABLE_BYTES})",
            hint="check a sample, or split the table into shards",
        )
    names, reader = _batches(path, text_columns)
    label_col = _label_column(name, names, label)
    texts: dict[str, _TextColumn] = {}
    label_chunks: list[Any] = []
    numeric: list[str] = []
    values: FloatArray | None = None  # (capacity, numeric columns), one column contiguous after another
    rows = 0
    for batch in reader:
        n = batch.num_rows
        if values is None:
            numeric = [c for c, f in zip(batch.schema.names, batch.schema, strict=True)
                       if c != label_col and _is_numeric(f.type)]  # fmt: skip
            # one allocation sized from the first block (a Parquet footer gives the exact count)
            estimate = int(rows_hint(size, n) * 1.02) + n
            check_size(name, estimate, len(numeric))
            values = np.empty((estimate, len(numeric)), dtype=np.float64, order="F")
        if rows + n > len(values):
            check_size(name, int((rows + n) * 1.25), len(numeric))
            grown = np.empty((int((rows + n) * 1.25), len(numeric)), dtype=np.float64, order="F")
            grown[:rows] = values[:rows]
            values = grown
        for j, col_name in enumerate(numeric):
            column = batch.column(col_name)
            if pa.types.is_null(column.type):
                values[rows : rows + n, j] = np.nan
            else:
                values[rows : rows + n, j] = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
        for col_name, column in zip(batch.schema.names, batch.columns, strict=True):
            if col_name == label_col:
                label_chunks.append(column)
            elif col_name not in numeric:
                texts.setdefault(col_name, _TextColumn()).add(column)
        rows += n
    if rows == 0 or values is None:
        raise DataError(f"{name}: the table has no rows")
    dataset = Dataset(source=name, kind=path.suffix.lower().lstrip(".") or "table", names=[], columns=[])
    for col_name in names:
        if col_name in texts:
            _judge_text(dataset, col_name, texts[col_name], None)
        elif col_name in numeric:
            dataset.names.append(col_name)
            dataset.columns.append(values[:rows, numeric.index(col_name)])
    if label_col is not None:
        dataset.labels, dataset.class_names = _labels(name, pa.chunked_array(label_chunks))
    return dataset


def _label_column(name: str, names: list[str], label: str | None) -> str | None:
    if len(set(names)) != len(names):
        raise DataError(f"{name}: duplicate column names")
    if label is not None:
        if label not in names:
            raise DataError(f"{name}: no label column {shown(label)!r} (columns: {shown(', '.join(names))})")
        return label
    lowered = {n.lower(): n for n in names}
    return next((lowered[c] for c in LABEL_NAMES if c in lowered), None)


def _read_parquet(path: Path, label: str | None) -> Dataset:
    """Parquet column by column: a file written as one row group would otherwise be decoded whole."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    name = str(path)
    parquet = pq.ParquetFile(path)
    schema = parquet.schema_arrow
    names = list(schema.names)
    label_col = _label_column(name, names, label)
    rows = int(parquet.metadata.num_rows)
    if rows == 0:
        raise DataError(f"{name}: the table has no rows")
    numeric = [f.name for f in schema if f.name != label_col and _is_numeric(f.type)]
    check_size(name, rows, len(numeric))
    values = np.empty((rows, len(numeric)), dtype=np.float64, order="F")
    dataset = Dataset(source=name, kind="parquet", names=[], columns=[])
    for col_name in names:
        column = parquet.read(columns=[col_name], use_threads=False).column(0)
        if len(column) != rows:
            raise DataError(
                f"{name}: column {shown(col_name)!r} has {len(column)} rows, the footer says {rows}"
            )
        if col_name == label_col:
            dataset.labels, dataset.class_names = _labels(name, column)
        elif col_name in numeric:
            j = numeric.index(col_name)
            if pa.types.is_null(column.type):
                values[:, j] = np.nan
            else:
                values[:, j] = pc.cast(column, pa.float64()).to_numpy()
            dataset.names.append(col_name)
            dataset.columns.append(values[:, j])
        else:
            text = _TextColumn()
            text.add(column)
            _judge_text(dataset, col_name, text, None)
        del column
    return dataset


def _judge_text(dataset: Dataset, col_name: str, text: _TextColumn, numeric: list[FloatArray] | None) -> None:
    loc = Location(file=dataset.source, pointer=f"/columns/{shown(col_name)}")
    total = text.values + (sum(len(c) for c in numeric) if numeric else 0)
    numbers = text.numeric + (sum(len(c) for c in numeric) if numeric else 0)
    examples = ", ".join(repr(shown(e, 30)) for e in text.examples)
    if total and numbers and numbers < total:
        dataset.problems.append(
            finding(
                "KGD102",
                f"column {shown(col_name)!r} mixes numbers ({numbers} of {total} values) with text; "
                "it was left out of the numeric checks",
                loc,
                evidence=f"non-numeric values: {examples}",
                remediation="fix or drop the rows with text in a numeric column",
            )
        )
    else:
        from kerasguard.findings import Severity

        dataset.problems.append(
            finding(
                "KGD102",
                f"column {shown(col_name)!r} is text ({total} values); left out of the numeric checks",
                loc,
                evidence=f"examples: {examples}" if examples else "",
                severity=Severity.INFO,
            )
        )
    dataset.non_numeric[col_name] = "string"


def _labels(name: str, column: Any) -> tuple[Any, tuple[str, ...] | None]:
    import pyarrow as pa
    import pyarrow.compute as pc

    if column.null_count:
        raise DataError(f"{name}: {column.null_count} rows have no label")
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        return labels_from(name, column.to_numpy())
    as_text = pc.cast(column, pa.string())
    classes = sorted(str(v) for v in pc.unique(as_text).to_pylist())
    index = pc.index_in(as_text, value_set=pa.array(classes, type=pa.string()))
    labels = np.asarray(index.to_numpy(zero_copy_only=False), dtype=np.int64)
    return labels, tuple(classes)
