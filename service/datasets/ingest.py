"""Turn an uploaded CSV or Parquet file into validated float32 features and 0/1 labels.

Every problem a client can fix raises ``InvalidInput`` (422) with a stable ``code`` and
a one-sentence message naming the column, row and value. The happy path is vectorised:
pyarrow parses (multithreaded for CSV), numpy checks whole arrays, and only the error
path walks rows in Python to say exactly where the problem is.

Row numbering, used in every message:

- Files: data row 1 is the first row after the header. CSV messages say
  ``row R (line L)``, where L is the 1-based line in the file counting the header as
  line 1; L and R differ by more than one only when blank lines (which are skipped) or
  quoted line breaks come before the row. Parquet messages say ``row R``.
- JSON rows (``features_from_rows``): ``rows[i]``, the 0-based index into the request's
  list, so a client can index its own payload with it.

CSV dialect: a header line is required, fields are comma-separated, ``"`` quotes, a
UTF-8 byte-order mark is ignored, blank lines are skipped. Exactly the cells in
``NULL_VALUES`` count as missing; ``nan``, ``inf`` and ``-inf`` parse as numbers and are
then rejected as non-finite, so a client learns which of the two it sent.

Order of checks, so the same file always gets the same error: arguments, then the
header (duplicates, label and feature columns), then parsing (ragged rows), then label
columns and feature columns in order, each top to bottom, then finiteness.
"""

from __future__ import annotations

import csv
import math
import numbers
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import chain
from operator import itemgetter
from pathlib import Path
from typing import Literal, NoReturn

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from service.errors import InvalidInput

Format = Literal["csv", "parquet"]

# Replaces pyarrow's default list, which also maps "nan", "NaN" and "-nan" to null:
# those must reach the finite check and be reported as non-finite, not as missing.
NULL_VALUES = ("", "NA", "N/A", "null", "NULL", "None")

PARQUET_MAGIC = b"PAR1"

# Rows converted per block when building the row-major matrix: 8192 rows x 100
# float32 features is 3 MiB, small enough to stay in cache while each column is
# written into it (about 2x faster than whole-column strided writes at 224k rows).
_BLOCK_ROWS = 8192

_HEADER_ONLY = "The uploaded file has a header but no data rows."
_MAX_LISTED = 10
_MAX_VALUE_CHARS = 40

# What a numeric cell looks like (pyarrow trims blanks around numbers too): used only
# to find the first offending cell of a column pyarrow already refused as numbers.
_NUMBER_PATTERN = (
    r"^\s*([+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?|[+-]?(inf|infinity|nan))\s*$"
)
_LABEL_PATTERN = r"^\s*([+-]?[01](\.0*)?|true|false)\s*$"

_TEXT_KINDS = (
    pa.types.is_string,
    pa.types.is_large_string,
    pa.types.is_binary,
    pa.types.is_large_binary,
)
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_PLAIN_NUMBER_TYPES = frozenset({float, int, bool})
_NUMBER_TYPES = (numbers.Real, Decimal, np.bool_)


@dataclass
class ParsedTable:
    """Validated arrays of one uploaded table.

    ``features`` float32 [rows, n_features], C-contiguous, finite;
    ``labels`` uint8 [rows, n_labels] of 0/1, or None for prediction input.
    """

    features: np.ndarray
    labels: np.ndarray | None
    feature_names: list[str]
    label_names: list[str]


def sniff_format(path: Path) -> Format:
    """Tell Parquet from CSV by content: Parquet files start with ``PAR1``."""
    with open(path, "rb") as f:
        return "parquet" if f.read(4) == PARQUET_MAGIC else "csv"


def read_training_table(path: Path, label_columns: Sequence[str]) -> ParsedTable:
    """Read a training table: ``label_columns`` hold 0/1, every other column is a
    numeric feature (integers, floats, booleans as 0/1), kept in file order."""
    labels = _checked_label_names(label_columns)
    upload = _open_upload(Path(path))

    absent = [name for name in labels if name not in upload.columns]
    if absent:
        raise InvalidInput(
            "dataset.label_column_missing",
            f"Label column {_quote(absent[0])} is not in the file; "
            f"its columns are {_listing(upload.columns)}.",
        )
    label_set = set(labels)
    features = [name for name in upload.columns if name not in label_set]
    if not features:
        raise InvalidInput(
            "dataset.no_feature_columns",
            "Every column in the file is a label column; add at least one numeric "
            "feature column.",
        )

    table = upload.read(features + labels)
    for name in labels:
        _check_label_column(table.column(name), name, upload)
    for name in features:
        _check_feature_column(table.column(name), name, upload)
    return ParsedTable(
        features=_features_matrix(table, features, upload),
        labels=_to_matrix(table, labels, np.uint8),
        feature_names=features,
        label_names=labels,
    )


def read_feature_table(
    path: Path, feature_names: Sequence[str], ignore_columns: Sequence[str] = ()
) -> ParsedTable:
    """Read prediction input: its columns must be exactly ``feature_names`` (any order)
    plus, optionally, any of ``ignore_columns`` (e.g. the model's label columns), which
    are dropped without being checked. Features come back in ``feature_names``
    order."""
    features = list(feature_names)
    upload = _open_upload(Path(path))

    present = set(upload.columns)
    missing = sorted(set(features) - present)
    if missing:
        raise InvalidInput(
            "predict.missing_features",
            f"The file lacks feature columns the model needs: {_listing(missing)}.",
        )
    known = set(features) | set(ignore_columns)
    extra = sorted(present - known)
    if extra:
        raise InvalidInput(
            "predict.extra_features",
            f"The file has columns the model does not know: {_listing(extra)}; "
            "remove them.",
        )

    table = upload.read(features)
    for name in features:
        _check_feature_column(table.column(name), name, upload)
    return ParsedTable(
        features=_features_matrix(table, features, upload),
        labels=None,
        feature_names=features,
        label_names=[],
    )


def features_from_rows(
    rows: list[dict[str, object]], feature_names: Sequence[str]
) -> np.ndarray:
    """JSON prediction rows -> float32 [len(rows), len(feature_names)], C-contiguous,
    columns in ``feature_names`` order. Each row must have exactly those keys, each
    holding a finite JSON number (booleans count as 0/1)."""
    names = list(feature_names)
    if not rows:
        raise InvalidInput(
            "predict.no_rows", "Field 'rows' is empty; send at least one row."
        )
    if not names:
        return np.empty((len(rows), 0), dtype=np.float32)

    # One C-level itemgetter call per row, then one fromiter: 10k rows x 100 features
    # take about 60 ms, where a Python loop over cells takes several times that.
    getter = itemgetter(*names) if len(names) > 1 else lambda row: (row[names[0]],)
    try:
        values = [getter(row) for row in rows]
    except (KeyError, TypeError, IndexError):
        _raise_row_shape_problem(rows, names)
    if max(map(len, rows)) > len(names):
        _raise_row_shape_problem(rows, names)

    if not set(map(type, chain.from_iterable(values))) <= _PLAIN_NUMBER_TYPES:
        _check_row_values(values, names)
    try:
        # Overflow to inf is expected here and reported by the finite check below.
        with np.errstate(over="ignore"):
            flat = np.fromiter(
                chain.from_iterable(values), np.float32, count=len(rows) * len(names)
            )
    except (OverflowError, TypeError, ValueError):
        _check_row_values(values, names)
        raise
    matrix = flat.reshape(len(rows), len(names))
    if not _all_finite(matrix):
        _check_row_values(values, names)
    return matrix


# --- opening and reading a file ---------------------------------------------------


@dataclass
class _Upload:
    """An uploaded file whose header has been read and checked."""

    path: Path
    format: Format
    columns: list[str]

    def read(self, names: list[str]) -> pa.Table:
        """The named columns, in that order, with at least one data row."""
        reader = _read_csv if self.format == "csv" else _read_parquet
        table = reader(self, names)
        if table.num_rows == 0:
            raise InvalidInput("dataset.empty_file", _HEADER_ONLY)
        for i, field in enumerate(table.schema):
            plain = _plain(table.column(i))
            if plain.type != field.type:
                table = table.set_column(i, field.name, plain)
        return table

    def where(self, row: int) -> str:
        """Name 0-based data row ``row`` the way messages do."""
        if self.format == "parquet":
            return f"row {row + 1}"
        line = _csv_line_of_row(self.path, row)
        return f"row {row + 1}" if line is None else f"row {row + 1} (line {line})"


def _open_upload(path: Path) -> _Upload:
    if path.stat().st_size == 0:
        raise InvalidInput("dataset.empty_file", "The uploaded file is empty.")
    file_format = sniff_format(path)
    columns = _csv_header(path) if file_format == "csv" else _parquet_header(path)

    duplicates = [name for name, count in Counter(columns).items() if count > 1]
    if duplicates:
        raise InvalidInput(
            "dataset.duplicate_column",
            f"Column {_quote(duplicates[0])} appears more than once in the header; "
            "column names must be unique.",
        )
    return _Upload(path, file_format, columns)


def _csv_header(path: Path) -> list[str]:
    """The header's fields, read here because pyarrow accepts duplicate names
    silently; raises unless a data row follows."""
    records = _csv_records(path)
    try:
        header = next(records, None)
        has_rows = next(records, None) is not None
    finally:
        records.close()

    if header is None:
        raise InvalidInput(
            "dataset.empty_file", "The uploaded file has only blank lines, no header."
        )
    try:
        "".join(header[1]).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(
            "dataset.malformed_file",
            "The uploaded file is not valid CSV: its header is not UTF-8 text.",
        ) from None
    if not has_rows:
        raise InvalidInput("dataset.empty_file", _HEADER_ONLY)
    return header[1]


def _parquet_header(path: Path) -> list[str]:
    try:
        return list(pq.read_schema(path).names)
    except (pa.ArrowException, OSError) as exc:
        raise _malformed("Parquet", exc, path) from exc


def _read_csv(upload: _Upload, names: list[str]) -> pa.Table:
    try:
        return pa_csv.read_csv(
            upload.path,
            read_options=pa_csv.ReadOptions(use_threads=True),
            parse_options=pa_csv.ParseOptions(delimiter=","),
            convert_options=pa_csv.ConvertOptions(
                include_columns=names,
                null_values=list(NULL_VALUES),
                strings_can_be_null=True,
            ),
        )
    except (pa.ArrowException, OSError) as exc:
        raise _ragged_row(upload) or _malformed("CSV", exc, upload.path) from exc


def _read_parquet(upload: _Upload, names: list[str]) -> pa.Table:
    try:
        return pq.read_table(upload.path, columns=names)
    except (pa.ArrowException, OSError) as exc:
        raise _malformed("Parquet", exc, upload.path) from exc


def _csv_records(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(first line number, fields)`` for each non-blank CSV record, header
    first; blank lines are skipped as pyarrow skips them, so record k here is record k
    there. Python-speed: used for the header and on error paths only. Bytes that are
    not UTF-8 become lone surrogates rather than errors: pyarrow reads such cells as
    binary, and a line count must not stop at them."""
    try:
        with open(
            path, newline="", encoding="utf-8-sig", errors="surrogateescape"
        ) as f:
            reader = csv.reader(f)
            start = 1
            for fields in reader:
                if fields:
                    yield start, fields
                start = reader.line_num + 1
    except csv.Error as exc:
        raise _malformed("CSV", exc, path) from exc


def _csv_line_of_row(path: Path, row: int) -> int | None:
    for index, (line, _) in enumerate(_csv_records(path)):
        if index == row + 1:  # record 0 is the header
            return line
    return None


def _ragged_row(upload: _Upload) -> InvalidInput | None:
    """The error for the first record whose field count differs from the header's,
    if there is one. Found here rather than through pyarrow's invalid_row_handler:
    its row number counts records, not lines, and is None when parsing multithreaded,
    and the handler itself fails on a row that is not UTF-8."""
    expected = len(upload.columns)
    for line, fields in _csv_records(upload.path):
        if len(fields) != expected:
            return InvalidInput(
                "dataset.ragged_row",
                f"Line {line} has {_fields(len(fields))} but the header has "
                f"{_fields(expected)}.",
            )
    return None


def _malformed(kind: str, exc: Exception, path: Path) -> InvalidInput:
    # Keep pyarrow's reason, minus the server-side path, cut to its first sentence.
    text = str(exc).replace(str(path), "<upload>").strip() or type(exc).__name__
    reason = re.split(r"(?<=\.)\s", text.splitlines()[0], maxsplit=1)[0].rstrip(".")
    if len(reason) > 200:
        reason = reason[:197] + "..."
    return InvalidInput(
        "dataset.malformed_file", f"The uploaded file is not valid {kind}: {reason}."
    )


# --- checking columns ---------------------------------------------------------------


def _checked_label_names(label_columns: Sequence[str]) -> list[str]:
    labels = list(label_columns)
    if not labels:
        raise InvalidInput(
            "dataset.no_label_columns",
            "No label columns were given; name the 0/1 label columns of the file.",
        )
    duplicates = [name for name, count in Counter(labels).items() if count > 1]
    if duplicates:
        raise InvalidInput(
            "dataset.duplicate_label_column",
            f"Label column {_quote(duplicates[0])} is named more than once in "
            "label_columns.",
        )
    return labels


def _check_label_column(column: pa.ChunkedArray, name: str, upload: _Upload) -> None:
    """Raise unless every cell of ``column`` is 0 or 1 (integer, float or boolean)."""
    _check_no_nulls(column, f"Label column {_quote(name)}", upload)
    kind = column.type
    if pa.types.is_boolean(kind):
        return

    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        values = column.to_numpy()
        bad = np.flatnonzero((values != 0) & (values != 1))
    elif _is_text(kind):
        bad = _unmatched(column, _LABEL_PATTERN)
        if bad.size == 0:
            raise InvalidInput(
                "dataset.invalid_label_value",
                f"Label column {_quote(name)} stores labels as text; store them as "
                "integers 0 and 1.",
            )
    else:
        bad = np.zeros(1, dtype=np.int64)
    if bad.size:
        row = int(bad[0])
        raise InvalidInput(
            "dataset.invalid_label_value",
            f"Label column {_quote(name)} has value {_shown(column[row].as_py())} at "
            f"{upload.where(row)}; labels must be 0 or 1.",
        )


def _check_feature_column(column: pa.ChunkedArray, name: str, upload: _Upload) -> None:
    """Raise unless ``column`` is numeric (or boolean) with no missing cells; finite
    values are checked later on the float32 matrix, where overflow also shows."""
    _check_no_nulls(column, f"Feature column {_quote(name)}", upload)
    kind = column.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return
    if pa.types.is_boolean(kind):
        return

    if _is_text(kind):
        bad = _unmatched(column, _NUMBER_PATTERN)
        if bad.size == 0:
            raise InvalidInput(
                "dataset.non_numeric_feature",
                f"Feature column {_quote(name)} stores numbers as text ({kind}); "
                "store it as a numeric type.",
            )
        row = int(bad[0])
    else:
        row = 0  # a date, list or other non-numeric type: its first cell is enough
    raise InvalidInput(
        "dataset.non_numeric_feature",
        f"Feature column {_quote(name)} has non-numeric value "
        f"{_shown(column[row].as_py())} at {upload.where(row)}.",
    )


def _check_no_nulls(column: pa.ChunkedArray, what: str, upload: _Upload) -> None:
    if column.null_count == 0:
        return
    row = int(np.flatnonzero(pc.is_null(column).to_numpy(zero_copy_only=False))[0])
    raise InvalidInput(
        "dataset.missing_value",
        f"{what} has no value at {upload.where(row)}; fill it in or drop the row.",
    )


def _plain(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Decode dictionary columns and turn decimals into float64 (Parquet only), so
    checks and the numpy conversion see plain types."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if pa.types.is_decimal(column.type):
        column = column.cast(pa.float64())
    return column


def _is_text(kind: pa.DataType) -> bool:
    # Binary too: pyarrow reads a CSV column holding bytes that are not UTF-8 as binary.
    return any(is_kind(kind) for is_kind in _TEXT_KINDS)


def _unmatched(column: pa.ChunkedArray, pattern: str) -> np.ndarray:
    """0-based rows whose text does not match ``pattern`` (nulls match)."""
    matched = pc.match_substring_regex(column, pattern, ignore_case=True)
    return np.flatnonzero(~matched.fill_null(True).to_numpy(zero_copy_only=False))


# --- building arrays ----------------------------------------------------------------


def _features_matrix(table: pa.Table, names: list[str], upload: _Upload) -> np.ndarray:
    """float32 [rows, len(names)], rejecting nan, inf and values beyond float32."""
    matrix = _to_matrix(table, names, np.float32)
    if _all_finite(matrix):
        return matrix

    row, col = np.unravel_index(np.argmax(~np.isfinite(matrix)), matrix.shape)
    name, value = names[col], table.column(names[col])[int(row)].as_py()
    too_large = isinstance(value, numbers.Real) and math.isfinite(value)
    reason = "which does not fit in float32" if too_large else "which is not finite"
    raise InvalidInput(
        "dataset.non_finite_value",
        f"Feature column {_quote(name)} has value {_shown(value)} at "
        f"{upload.where(int(row))}, {reason}; use finite numbers only.",
    )


def _to_matrix(table: pa.Table, names: list[str], dtype: type) -> np.ndarray:
    """Columns ``names`` of a validated table as a C-contiguous [rows, len(names)]."""
    matrix = np.empty((table.num_rows, len(names)), dtype=dtype)
    start = 0
    # Float64 beyond float32 range becomes inf, which _features_matrix then reports.
    with np.errstate(over="ignore"):
        for batch in table.select(names).to_batches(max_chunksize=_BLOCK_ROWS):
            block = matrix[start : start + batch.num_rows]
            for j, column in enumerate(batch.columns):
                block[:, j] = column.to_numpy(zero_copy_only=False)
            start += batch.num_rows
    return matrix


def _all_finite(matrix: np.ndarray) -> bool:
    # min and max propagate nan and expose +-inf without a [rows, features] bool mask.
    return bool(np.isfinite(matrix.min()) and np.isfinite(matrix.max()))


# --- JSON rows: error paths -----------------------------------------------------------


def _raise_row_shape_problem(
    rows: list[dict[str, object]], names: list[str]
) -> NoReturn:
    """Raise for the first row that is not a mapping or whose keys differ from
    ``names``; the caller only calls this after spotting such a row."""
    expected = set(names)
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise InvalidInput(
                "predict.invalid_row",
                f"rows[{index}] is {type(row).__name__}, not an object mapping "
                "feature names to numbers.",
            )
        missing = sorted(expected - row.keys())
        if missing:
            raise InvalidInput(
                "predict.missing_features",
                f"rows[{index}] lacks feature keys {_listing(missing)}.",
            )
        extra = sorted(map(str, row.keys() - expected))
        if extra:
            raise InvalidInput(
                "predict.extra_features",
                f"rows[{index}] has keys the model does not know: {_listing(extra)}; "
                "remove them.",
            )
    raise AssertionError("no malformed row found")  # pragma: no cover


def _check_row_values(values: list[tuple[object, ...]], names: list[str]) -> None:
    """Raise for the first cell, in row-major order, that is not a finite number
    within float32 range; return if there is none."""
    for index, cells in enumerate(values):
        for name, value in zip(names, cells, strict=True):
            where = f"rows[{index}] key {_quote(name)}"
            if value is None:
                raise InvalidInput(
                    "dataset.missing_value", f"{where} is null; send a number."
                )
            if not isinstance(value, _NUMBER_TYPES):
                raise InvalidInput(
                    "dataset.non_numeric_feature",
                    f"{where} has non-numeric value {_shown(value)}; send a number.",
                )
            problem = _real_problem(value)
            if problem:
                raise InvalidInput(
                    "dataset.non_finite_value",
                    f"{where} has value {_shown(value)}, {problem}; use finite "
                    "numbers only.",
                )


def _real_problem(value: numbers.Real | Decimal | np.bool_) -> str | None:
    try:
        magnitude = abs(float(value))
    except OverflowError:
        return "which does not fit in float32"
    if not math.isfinite(magnitude):
        return "which is not finite"
    if magnitude > _FLOAT32_MAX:
        return "which does not fit in float32"
    return None


# --- message helpers ------------------------------------------------------------------


def _quote(name: str) -> str:
    return "'" + name + "'"


def _listing(names: Sequence[str]) -> str:
    """'a', 'b' and 'c' / 'a', ..., 'j' and 5 more — at most ten names shown."""
    shown = [_quote(name) for name in names[:_MAX_LISTED]]
    rest = len(names) - len(shown)
    if rest:
        return ", ".join(shown) + f" and {rest} more"
    if len(shown) == 1:
        return shown[0]
    return ", ".join(shown[:-1]) + " and " + shown[-1]


def _fields(count: int) -> str:
    return f"{count} field" if count == 1 else f"{count} fields"


def _shown(value: object) -> str:
    """A cell value as messages print it: text quoted, long values cut short."""
    if isinstance(value, bytes):
        text = "'" + value.decode("utf-8", errors="backslashreplace") + "'"
    else:
        text = repr(value) if isinstance(value, str) else str(value)
    if len(text) > _MAX_VALUE_CHARS:
        text = text[: _MAX_VALUE_CHARS - 3] + "..."
    return text
