"""service.datasets.ingest: every error code with its exact message, and the arrays
of the happy path checked against a plain csv-module reading."""

from __future__ import annotations

import csv
import json
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from service.datasets.ingest import (
    features_from_rows,
    read_feature_table,
    read_training_table,
    sniff_format,
)
from service.errors import InvalidInput

# An overflow or conversion warning would mean a value slipped past the checks.
pytestmark = pytest.mark.filterwarnings("error")

YEAST = Path(__file__).resolve().parents[2].parent / "shared/datasets/yeast"

GOOD_CSV = """\
f1,y2,f2,y1,f3
1,0,-5000,1,true
2.5,1,4999.75,0,TRUE
-3,1, 7 ,1,false
"""
# The same table by hand: features in file order, labels in the order asked for.
GOOD_FEATURES = [[1.0, -5000.0, 1.0], [2.5, 4999.75, 1.0], [-3.0, 7.0, 0.0]]
GOOD_LABELS = [[1, 0], [0, 1], [1, 1]]


def write_csv(tmp_path: Path, text: str, name: str = "upload.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def write_parquet(tmp_path: Path, table: pa.Table, name: str = "upload.bin") -> Path:
    # No .parquet suffix: the format must be sniffed from content.
    path = tmp_path / name
    pq.write_table(table, path)
    return path


def rejected(call, *args, **kwargs) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        call(*args, **kwargs)
    assert caught.value.status_code == 422
    return caught.value


def assert_error(error: InvalidInput, code: str, message: str) -> None:
    assert (error.code, error.message) == (code, message)


# ---------------------------------------------------------------------------------
# Format sniffing and the happy path
# ---------------------------------------------------------------------------------


def test_sniff_format_reads_content_not_suffix(tmp_path: Path) -> None:
    parquet = write_parquet(tmp_path, pa.table({"a": [1]}), "data.csv")
    text = write_csv(tmp_path, "a\n1\n", "data.parquet")
    assert sniff_format(parquet) == "parquet"
    assert sniff_format(text) == "csv"


def test_csv_training_table_matches_hand_written_arrays(tmp_path: Path) -> None:
    table = read_training_table(write_csv(tmp_path, GOOD_CSV), ["y1", "y2"])

    assert table.feature_names == ["f1", "f2", "f3"]
    assert table.label_names == ["y1", "y2"]
    assert table.features.dtype == np.float32 and table.features.flags.c_contiguous
    assert table.labels is not None
    assert table.labels.dtype == np.uint8 and table.labels.flags.c_contiguous
    np.testing.assert_array_equal(table.features, np.float32(GOOD_FEATURES))
    np.testing.assert_array_equal(table.labels, np.uint8(GOOD_LABELS))


def test_parquet_training_table_gives_the_same_arrays_as_csv(tmp_path: Path) -> None:
    source = pa.table(
        {
            "f1": pa.array([1.0, 2.5, -3.0]),
            "y2": pa.array([0, 1, 1], pa.int8()),
            "f2": pa.array([-5000.0, 4999.75, 7.0], pa.float32()),
            "y1": pa.array([True, False, True]),
            "f3": pa.array([True, True, False]),
        }
    )
    from_parquet = read_training_table(write_parquet(tmp_path, source), ["y1", "y2"])
    from_csv = read_training_table(write_csv(tmp_path, GOOD_CSV), ["y1", "y2"])

    assert from_parquet.feature_names == from_csv.feature_names
    assert from_parquet.label_names == from_csv.label_names
    np.testing.assert_array_equal(from_parquet.features, from_csv.features)
    np.testing.assert_array_equal(from_parquet.labels, from_csv.labels)
    assert from_parquet.features.dtype == np.float32
    assert from_parquet.labels is not None and from_parquet.labels.dtype == np.uint8


def test_parquet_decimal_dictionary_and_multi_row_group_columns(tmp_path: Path) -> None:
    source = pa.table(
        {
            "price": pa.array([Decimal("1.25"), Decimal("-2.50"), Decimal("3")]),
            "code": pa.array([3, 1, 3]).dictionary_encode(),
            "y": pa.array([1.0, 0.0, 1.0]),
        }
    )
    path = tmp_path / "groups.bin"
    pq.write_table(source, path, row_group_size=2)

    table = read_training_table(path, ["y"])

    np.testing.assert_array_equal(
        table.features, np.float32([[1.25, 3], [-2.5, 1], [3, 3]])
    )
    np.testing.assert_array_equal(table.labels, np.uint8([[1], [0], [1]]))


def test_csv_with_bom_crlf_and_blank_lines_parses(tmp_path: Path) -> None:
    path = tmp_path / "windows.csv"
    path.write_bytes(b"\xef\xbb\xbfa,y\r\n1,0\r\n\r\n2,1\r\n")

    table = read_training_table(path, ["y"])

    assert table.feature_names == ["a"]
    np.testing.assert_array_equal(table.features, np.float32([[1], [2]]))
    np.testing.assert_array_equal(table.labels, np.uint8([[0], [1]]))


def test_many_blocks_keep_row_order(tmp_path: Path) -> None:
    # ~2.5 MB: pyarrow parses it in several 1 MiB blocks on several threads.
    rng = np.random.default_rng(7)
    features = rng.integers(-5000, 5000, size=(60_000, 6))
    labels = rng.integers(0, 2, size=(60_000, 2))
    body = np.hstack([features, labels])
    lines = ["a,b,c,d,e,f,y1,y2"] + [",".join(map(str, row)) for row in body]
    path = write_csv(tmp_path, "\n".join(lines) + "\n")

    table = read_training_table(path, ["y1", "y2"])

    np.testing.assert_array_equal(table.features, features.astype(np.float32))
    np.testing.assert_array_equal(table.labels, labels.astype(np.uint8))


def test_yeast_train_split_matches_its_meta_and_a_plain_reading() -> None:
    meta = json.loads((YEAST / "meta.json").read_text())
    table = read_training_table(YEAST / "train.csv", meta["labels"])

    assert table.features.shape == (1500, 103)
    assert table.labels is not None and table.labels.shape == (1500, 14)
    assert table.label_names == meta["labels"]
    assert table.labels.sum(axis=0).tolist() == meta["label_counts_train"]

    # Reference: the csv module and float(), one cell at a time.
    with open(YEAST / "train.csv", newline="") as f:
        records = list(csv.DictReader(f))
    expected = [[float(r[name]) for name in table.feature_names] for r in records]
    np.testing.assert_array_equal(table.features, np.float32(expected))
    assert table.feature_names == [
        name for name in records[0] if name not in set(meta["labels"])
    ]


# ---------------------------------------------------------------------------------
# Training-table errors, in the order a client would meet them
# ---------------------------------------------------------------------------------


def test_zero_byte_file_is_empty(tmp_path: Path) -> None:
    error = rejected(read_training_table, write_csv(tmp_path, ""), ["y"])
    assert_error(error, "dataset.empty_file", "The uploaded file is empty.")


@pytest.mark.parametrize("text", ["a,y\n", "a,y", "a,y\n\n\n"])
def test_header_without_rows_is_empty(tmp_path: Path, text: str) -> None:
    error = rejected(read_training_table, write_csv(tmp_path, text), ["y"])
    assert_error(
        error, "dataset.empty_file", "The uploaded file has a header but no data rows."
    )


def test_blank_lines_only_is_empty(tmp_path: Path) -> None:
    error = rejected(read_training_table, write_csv(tmp_path, "\n\n"), ["y"])
    assert_error(
        error,
        "dataset.empty_file",
        "The uploaded file has only blank lines, no header.",
    )


def test_parquet_without_rows_is_empty(tmp_path: Path) -> None:
    source = pa.table({"a": pa.array([], pa.float64()), "y": pa.array([], pa.int8())})
    error = rejected(read_training_table, write_parquet(tmp_path, source), ["y"])
    assert_error(
        error, "dataset.empty_file", "The uploaded file has a header but no data rows."
    )


def test_no_label_columns(tmp_path: Path) -> None:
    error = rejected(read_training_table, write_csv(tmp_path, GOOD_CSV), [])
    assert_error(
        error,
        "dataset.no_label_columns",
        "No label columns were given; name the 0/1 label columns of the file.",
    )


def test_duplicate_label_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path, GOOD_CSV)
    error = rejected(read_training_table, path, ["y1", "y2", "y1"])
    assert_error(
        error,
        "dataset.duplicate_label_column",
        "Label column 'y1' is named more than once in label_columns.",
    )


def test_duplicate_csv_header_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "a,b,y,b\n1,2,0,3\n")
    error = rejected(read_training_table, path, ["y"])
    assert_error(
        error,
        "dataset.duplicate_column",
        "Column 'b' appears more than once in the header; column names must be unique.",
    )


def test_duplicate_parquet_column(tmp_path: Path) -> None:
    source = pa.Table.from_arrays(
        [pa.array([1.0]), pa.array([2.0]), pa.array([1])], names=["a", "a", "y"]
    )
    error = rejected(read_training_table, write_parquet(tmp_path, source), ["y"])
    assert_error(
        error,
        "dataset.duplicate_column",
        "Column 'a' appears more than once in the header; column names must be unique.",
    )


def test_label_column_missing_lists_the_columns(tmp_path: Path) -> None:
    error = rejected(read_training_table, write_csv(tmp_path, GOOD_CSV), ["y1", "Y3"])
    assert_error(
        error,
        "dataset.label_column_missing",
        "Label column 'Y3' is not in the file; its columns are "
        "'f1', 'y2', 'f2', 'y1' and 'f3'.",
    )


def test_label_column_missing_cuts_a_long_column_list(tmp_path: Path) -> None:
    header = ",".join(f"c{i}" for i in range(13))
    path = write_csv(tmp_path, header + "\n" + ",".join(["0"] * 13) + "\n")
    error = rejected(read_training_table, path, ["y"])
    assert error.code == "dataset.label_column_missing"
    assert error.message == (
        "Label column 'y' is not in the file; its columns are 'c0', 'c1', 'c2', "
        "'c3', 'c4', 'c5', 'c6', 'c7', 'c8', 'c9' and 3 more."
    )


def test_no_feature_columns(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "y1,y2\n0,1\n")
    error = rejected(read_training_table, path, ["y2", "y1"])
    assert_error(
        error,
        "dataset.no_feature_columns",
        "Every column in the file is a label column; add at least one numeric "
        "feature column.",
    )


@pytest.mark.parametrize(
    ("cell", "shown"),
    [("2", "2"), ("-1", "-1"), ("0.5", "0.5"), ("yes", "'yes'"), ("nan", "nan")],
)
def test_invalid_csv_label_value(tmp_path: Path, cell: str, shown: str) -> None:
    path = write_csv(tmp_path, f"a,y\n1,0\n2,1\n3,{cell}\n4,1\n")
    error = rejected(read_training_table, path, ["y"])
    assert_error(
        error,
        "dataset.invalid_label_value",
        f"Label column 'y' has value {shown} at row 3 (line 4); labels must be 0 or 1.",
    )


def test_invalid_parquet_label_value(tmp_path: Path) -> None:
    source = pa.table({"a": [1.0, 2.0], "y": pa.array([1, 7], pa.int32())})
    error = rejected(read_training_table, write_parquet(tmp_path, source), ["y"])
    assert_error(
        error,
        "dataset.invalid_label_value",
        "Label column 'y' has value 7 at row 2; labels must be 0 or 1.",
    )


def test_parquet_text_labels_are_rejected(tmp_path: Path) -> None:
    source = pa.table({"a": [1.0, 2.0], "y": ["0", "1"]})
    error = rejected(read_training_table, write_parquet(tmp_path, source), ["y"])
    assert_error(
        error,
        "dataset.invalid_label_value",
        "Label column 'y' stores labels as text; store them as integers 0 and 1.",
    )


@pytest.mark.parametrize("cell", ["abc", "1,5", "12kg", "--3"])
def test_non_numeric_csv_feature(tmp_path: Path, cell: str) -> None:
    quoted = '"' + cell + '"'  # a quoted comma stays inside its cell
    path = write_csv(tmp_path, f"a,b,y\n1,2,0\n3,{quoted},1\n4,5,0\n")
    error = rejected(read_training_table, path, ["y"])
    assert_error(
        error,
        "dataset.non_numeric_feature",
        f"Feature column 'b' has non-numeric value {cell!r} at row 2 (line 3).",
    )


def test_non_numeric_first_offender_after_numeric_looking_text(tmp_path: Path) -> None:
    # Whitespace-padded numbers and inf are numbers; the first real offender is named.
    path = write_csv(tmp_path, "a,y\n 1 ,0\ninf,1\n1e5,0\nx1,1\n")
    error = rejected(read_training_table, path, ["y"])
    assert_error(
        error,
        "dataset.non_numeric_feature",
        "Feature column 'a' has non-numeric value 'x1' at row 4 (line 5).",
    )


def test_date_feature_is_non_numeric(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "when,y\n2024-01-02,0\n2024-01-03,1\n")
    error = rejected(read_training_table, path, ["y"])
    assert_error(
        error,
        "dataset.non_numeric_feature",
        "Feature column 'when' has non-numeric value 2024-01-02 at row 1 (line 2).",
    )


def test_non_utf8_feature_cell_is_non_numeric(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"a,y\n1,0\ncaf\xe9,1\n")
    error = rejected(read_training_table, path, ["y"])
    assert_error(
        error,
        "dataset.non_numeric_feature",
        "Feature column 'a' has non-numeric value 'caf\\xe9' at row 2 (line 3).",
    )


def test_parquet_string_feature_names_first_offender(tmp_path: Path) -> None:
    source = pa.table({"a": ["1.5", "2", "n/a?", "x"], "y": [0, 1, 0, 1]})
    error = rejected(read_training_table, write_parquet(tmp_path, source), ["y"])
    assert_error(
        error,
        "dataset.non_numeric_feature",
        "Feature column 'a' has non-numeric value 'n/a?' at row 3.",
    )


def test_parquet_numbers_stored_as_text_are_rejected(tmp_path: Path) -> None:
    source = pa.table({"a": ["1.5", "2"], "y": [0, 1]})
    error = rejected(read_training_table, write_parquet(tmp_path, source), ["y"])
    assert_error(
        error,
        "dataset.non_numeric_feature",
        "Feature column 'a' stores numbers as text (string); store it as a numeric "
        "type.",
    )


@pytest.mark.parametrize("cell", ["", "NA", "N/A", "null", "NULL", "None", '""'])
def test_missing_feature_value(tmp_path: Path, cell: str) -> None:
    path = write_csv(tmp_path, f"a,b,y\n1,2,0\n3,{cell},1\n")
    error = rejected(read_training_table, path, ["y"])
    assert_error(
        error,
        "dataset.missing_value",
        "Feature column 'b' has no value at row 2 (line 3); fill it in or drop the "
        "row.",
    )


def test_missing_value_in_a_text_column_is_missing_first(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "a,y\nabc,0\n,1\n")
    error = rejected(read_training_table, path, ["y"])
    assert_error(
        error,
        "dataset.missing_value",
        "Feature column 'a' has no value at row 2 (line 3); fill it in or drop the "
        "row.",
    )


def test_missing_label_value(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "a,y\n1,\n2,1\n")
    error = rejected(read_training_table, path, ["y"])
    assert_error(
        error,
        "dataset.missing_value",
        "Label column 'y' has no value at row 1 (line 2); fill it in or drop the row.",
    )


def test_missing_parquet_value(tmp_path: Path) -> None:
    source = pa.table({"a": [1.0, 2.0, None], "y": [0, 1, 0]})
    error = rejected(read_training_table, write_parquet(tmp_path, source), ["y"])
    assert_error(
        error,
        "dataset.missing_value",
        "Feature column 'a' has no value at row 3; fill it in or drop the row.",
    )


@pytest.mark.parametrize(
    ("cell", "shown", "reason"),
    [
        ("inf", "inf", "which is not finite"),
        ("-inf", "-inf", "which is not finite"),
        ("nan", "nan", "which is not finite"),
        ("NaN", "nan", "which is not finite"),
        ("1e39", "1e+39", "which does not fit in float32"),
    ],
)
def test_non_finite_feature(tmp_path: Path, cell: str, shown: str, reason: str) -> None:
    path = write_csv(tmp_path, f"a,b,y\n1,2,0\n3,4,1\n5,{cell},1\n")
    error = rejected(read_training_table, path, ["y"])
    assert_error(
        error,
        "dataset.non_finite_value",
        f"Feature column 'b' has value {shown} at row 3 (line 4), {reason}; use "
        "finite numbers only.",
    )


def test_non_finite_parquet_feature(tmp_path: Path) -> None:
    source = pa.table({"a": [1.0, float("-inf")], "y": [0, 1]})
    error = rejected(read_training_table, write_parquet(tmp_path, source), ["y"])
    assert_error(
        error,
        "dataset.non_finite_value",
        "Feature column 'a' has value -inf at row 2, which is not finite; use finite "
        "numbers only.",
    )


def test_line_numbers_count_skipped_blank_lines(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "a,y\n\n1,0\n\n\n2,1\nbad,0\n")
    error = rejected(read_training_table, path, ["y"])
    assert_error(
        error,
        "dataset.non_numeric_feature",
        "Feature column 'a' has non-numeric value 'bad' at row 3 (line 7).",
    )


def test_ragged_row_names_its_line(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "a,b,y\n1,2,0\n\n3,1\n4,5,6,7\n")
    error = rejected(read_training_table, path, ["y"])
    assert_error(
        error, "dataset.ragged_row", "Line 4 has 2 fields but the header has 3 fields."
    )


def test_ragged_row_deep_in_a_multithreaded_parse(tmp_path: Path) -> None:
    # pyarrow reports no row number when parsing blocks in parallel.
    lines = ["a,b,y"] + ["1234.5678,-4321.125,1"] * 120_000
    lines[100_001] = "1,2,0,9"
    path = write_csv(tmp_path, "\n".join(lines) + "\n")
    error = rejected(read_training_table, path, ["y"])
    assert_error(
        error,
        "dataset.ragged_row",
        "Line 100002 has 4 fields but the header has 3 fields.",
    )


def test_ragged_row_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"a,b,y\n1,2,0\ncaf\xe9,1\n")
    error = rejected(read_training_table, path, ["y"])
    assert_error(
        error, "dataset.ragged_row", "Line 3 has 2 fields but the header has 3 fields."
    )


def test_corrupt_parquet_is_malformed_and_hides_the_path(tmp_path: Path) -> None:
    path = tmp_path / "broken.bin"
    path.write_bytes(b"PAR1" + b"\x00" * 64)
    error = rejected(read_training_table, path, ["y"])
    assert error.code == "dataset.malformed_file"
    assert error.message.startswith("The uploaded file is not valid Parquet: ")
    assert str(tmp_path) not in error.message
    assert error.message.endswith(".") and ". " not in error.message


def test_truncated_parquet_is_malformed(tmp_path: Path) -> None:
    whole = write_parquet(tmp_path, pa.table({"a": [1.0, 2.0], "y": [0, 1]}))
    path = tmp_path / "truncated.bin"
    path.write_bytes(whole.read_bytes()[:-20])
    error = rejected(read_training_table, path, ["y"])
    assert error.code == "dataset.malformed_file"
    assert error.message.startswith("The uploaded file is not valid Parquet: ")


def test_non_utf8_csv_header_is_malformed(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"caf\xe9,y\n1,0\n")
    error = rejected(read_training_table, path, ["y"])
    assert_error(
        error,
        "dataset.malformed_file",
        "The uploaded file is not valid CSV: its header is not UTF-8 text.",
    )


# ---------------------------------------------------------------------------------
# Prediction files
# ---------------------------------------------------------------------------------


def test_feature_table_reorders_and_drops_ignored_columns(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "c,y,a,b\n3,junk,1,2\n6,,4,5\n")
    table = read_feature_table(path, ["a", "b", "c"], ignore_columns=["y", "z"])

    assert table.labels is None and table.label_names == []
    assert table.feature_names == ["a", "b", "c"]
    assert table.features.flags.c_contiguous
    np.testing.assert_array_equal(table.features, np.float32([[1, 2, 3], [4, 5, 6]]))


def test_parquet_feature_table_reorders(tmp_path: Path) -> None:
    source = pa.table({"b": [2.0, 5.0], "a": pa.array([1, 4], pa.int16())})
    table = read_feature_table(write_parquet(tmp_path, source), ["a", "b"])
    np.testing.assert_array_equal(table.features, np.float32([[1, 2], [4, 5]]))


def test_feature_table_missing_features_are_listed_sorted(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "b,y\n1,0\n")
    error = rejected(read_feature_table, path, ["d", "b", "a", "c"], ["y"])
    assert_error(
        error,
        "predict.missing_features",
        "The file lacks feature columns the model needs: 'a', 'c' and 'd'.",
    )


def test_feature_table_extra_columns_are_listed_and_cut(tmp_path: Path) -> None:
    extra = [f"x{i:02d}" for i in range(12)]
    path = write_csv(
        tmp_path, ",".join(["a", *reversed(extra)]) + "\n" + "1," * 12 + "1\n"
    )
    error = rejected(read_feature_table, path, ["a"])
    assert_error(
        error,
        "predict.extra_features",
        "The file has columns the model does not know: 'x00', 'x01', 'x02', 'x03', "
        "'x04', 'x05', 'x06', 'x07', 'x08', 'x09' and 2 more; remove them.",
    )


def test_feature_table_checks_values_with_row_and_line(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "b,a\n1,2\n3,oops\n")
    error = rejected(read_feature_table, path, ["a", "b"])
    assert_error(
        error,
        "dataset.non_numeric_feature",
        "Feature column 'a' has non-numeric value 'oops' at row 2 (line 3).",
    )


def test_feature_table_header_only_is_empty(tmp_path: Path) -> None:
    error = rejected(read_feature_table, write_csv(tmp_path, "a,b\n"), ["a", "b"])
    assert error.code == "dataset.empty_file"


# ---------------------------------------------------------------------------------
# JSON rows
# ---------------------------------------------------------------------------------


def test_rows_become_float32_in_feature_order() -> None:
    rows: list[dict[str, object]] = [
        {"b": 2, "a": 1.5, "c": True},
        {"c": False, "a": -5000, "b": 4999.25},
    ]
    matrix = features_from_rows(rows, ["a", "b", "c"])

    assert matrix.dtype == np.float32 and matrix.flags.c_contiguous
    np.testing.assert_array_equal(
        matrix, np.float32([[1.5, 2, 1], [-5000, 4999.25, 0]])
    )


def test_rows_accept_numpy_and_decimal_numbers() -> None:
    rows: list[dict[str, object]] = [
        {"a": np.float64(0.25), "b": Decimal("-2.5"), "c": np.bool_(True)}
    ]
    matrix = features_from_rows(rows, ["a", "b", "c"])
    np.testing.assert_array_equal(matrix, np.float32([[0.25, -2.5, 1]]))


def test_rows_with_one_feature() -> None:
    matrix = features_from_rows([{"a": 1}, {"a": 2}], ["a"])
    np.testing.assert_array_equal(matrix, np.float32([[1], [2]]))


def test_rows_match_a_plain_loop_on_random_input() -> None:
    rng = np.random.default_rng(3)
    names = [f"f{i}" for i in range(40)]
    values = rng.normal(scale=1000, size=(500, 40))
    rows = [dict(zip(names, map(float, row), strict=True)) for row in values]

    matrix = features_from_rows(rows, list(reversed(names)))

    expected = [[np.float32(row[name]) for name in reversed(names)] for row in rows]
    np.testing.assert_array_equal(matrix, np.array(expected, dtype=np.float32))


def test_no_rows() -> None:
    error = rejected(features_from_rows, [], ["a"])
    assert_error(
        error, "predict.no_rows", "Field 'rows' is empty; send at least one row."
    )


def test_row_missing_keys() -> None:
    rows: list[dict[str, object]] = [{"a": 1, "b": 2}, {"a": 1, "b": 2}, {"x": 3}]
    error = rejected(features_from_rows, rows, ["b", "a"])
    assert_error(
        error, "predict.missing_features", "rows[2] lacks feature keys 'a' and 'b'."
    )


def test_row_extra_keys() -> None:
    rows: list[dict[str, object]] = [{"a": 1}, {"a": 2, "zz": 0, "q": 1}]
    error = rejected(features_from_rows, rows, ["a"])
    assert_error(
        error,
        "predict.extra_features",
        "rows[1] has keys the model does not know: 'q' and 'zz'; remove them.",
    )


def test_row_that_is_not_an_object() -> None:
    rows = [{"a": 1}, [1]]
    error = rejected(features_from_rows, rows, ["a"])
    assert_error(
        error,
        "predict.invalid_row",
        "rows[1] is list, not an object mapping feature names to numbers.",
    )


@pytest.mark.parametrize(
    ("value", "code", "message"),
    [
        (None, "dataset.missing_value", "rows[1] key 'b' is null; send a number."),
        (
            "1.5",
            "dataset.non_numeric_feature",
            "rows[1] key 'b' has non-numeric value '1.5'; send a number.",
        ),
        (
            [1],
            "dataset.non_numeric_feature",
            "rows[1] key 'b' has non-numeric value [1]; send a number.",
        ),
        (
            float("nan"),
            "dataset.non_finite_value",
            "rows[1] key 'b' has value nan, which is not finite; use finite numbers "
            "only.",
        ),
        (
            float("-inf"),
            "dataset.non_finite_value",
            "rows[1] key 'b' has value -inf, which is not finite; use finite numbers "
            "only.",
        ),
        (
            1e39,
            "dataset.non_finite_value",
            "rows[1] key 'b' has value 1e+39, which does not fit in float32; use "
            "finite numbers only.",
        ),
        (
            10**400,
            "dataset.non_finite_value",
            "rows[1] key 'b' has value 1000000000000000000000000000000000000..., "
            "which does not fit in float32; use finite numbers only.",
        ),
    ],
)
def test_row_bad_values(value: object, code: str, message: str) -> None:
    rows: list[dict[str, object]] = [{"a": 1, "b": 2}, {"a": 3, "b": value}]
    error = rejected(features_from_rows, rows, ["a", "b"])
    assert_error(error, code, message)
