"""Reading and validating data files, at the unit level: hostile inputs give a specific reason,
each check counts exactly its offending rows, and the profile agrees with polars and numpy."""

from __future__ import annotations

import io
import math
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mldeck.data.expectations import DataSettings
from mldeck.data.readers import SNIFF_BYTES, ReadError, open_source
from mldeck.data.validate import (
    QUANTILES,
    REASON,
    ROW,
    CheckResult,
    Validation,
    build,
    first_pass,
    reference_profile,
    validate,
)

ARRIVED = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
ABC = {"a": {"type": "int"}, "b": {"type": "string"}, "c": {"type": "float"}}


def data_settings(**data: Any) -> DataSettings:
    return DataSettings.model_validate(data)


def write(folder: Path, name: str, content: bytes | str) -> Path:
    path = folder / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def write_parquet(folder: Path, name: str, frame: pl.DataFrame) -> Path:
    path = folder / name
    frame.write_parquet(path)
    return path


def rows_path(path: Path) -> Path:
    return path.with_name(path.name + ".rows.parquet")


def run(path: Path, expectations: DataSettings | None = None, **kwargs: Any) -> Validation:
    """Open and validate *path*, offending rows next to it (a read error raises ReadError)."""
    expectations = expectations or DataSettings()
    source = open_source(path, separator=expectations.csv_separator)
    kwargs.setdefault("arrived_at", ARRIVED)
    return validate(source, expectations, offending_path=rows_path(path), **kwargs)


def reasons_of(path: Path, expectations: DataSettings | None = None) -> tuple[str, list[str]]:
    """(status, reasons) for *path*, whether it fails when opened or when validated."""
    try:
        result = run(path, expectations)
    except ReadError as exc:
        return "unreadable", [str(exc)]
    return result.status, result.reasons()


def check(result: Validation, name: str, column: str | None = None) -> CheckResult:
    found = [c for c in result.checks if c.check == name and c.column == column]
    assert len(found) == 1, [c.as_dict() for c in result.checks]
    return found[0]


# -- hostile files ----------------------------------------------------------------------------


def test_an_empty_file_says_zero_bytes(tmp_path):
    with pytest.raises(ReadError, match=r"^empty file \(0 bytes\)$"):
        open_source(write(tmp_path, "empty.csv", b""))


def test_a_blank_first_line_means_no_header(tmp_path):
    with pytest.raises(ReadError, match="the first line is empty: no header"):
        open_source(write(tmp_path, "blank.csv", b"\n1,2,3\n"))
    with pytest.raises(ReadError, match="the first line is empty: no header"):
        open_source(write(tmp_path, "spaces.csv", b"   \n\n"))


def test_lines_ended_by_a_carriage_return_alone_are_named(tmp_path):
    """Read as one header line: the rejection listed "unexpected columns" made of values."""
    with pytest.raises(ReadError, match="carriage return alone"):
        open_source(write(tmp_path, "mac.csv", b"a,b,c\r1,x,2\r3,y,4\r"))
    assert open_source(write(tmp_path, "dos.csv", b"a,b,c\r\n1,x,2\r\n")).columns == ["a", "b", "c"]
    assert open_source(write(tmp_path, "one.csv", b"a,b,c\r")).columns == ["a", "b", "c"]


def test_a_header_only_file_has_zero_rows_and_fails_the_row_count(tmp_path):
    path = write(tmp_path, "header.csv", "a,b,c\n")
    result = run(path, data_settings(columns=ABC))
    assert (result.status, result.n_rows, result.n_cols) == ("rejected", 0, 3)
    rows = check(result, "rows")
    assert (rows.status, rows.detail) == ("fail", "0 rows (at least 1 expected)")
    assert result.reasons() == ["rows: 0 rows (at least 1 expected)"]
    assert run(path, data_settings(table={"min_rows": 0})).status == "accepted"


def test_non_utf8_bytes_near_the_start_name_the_byte_and_offset(tmp_path):
    body = "a,b,c\n1,café,2.0\n".encode("latin-1")
    path = write(tmp_path, "latin1.csv", body)
    with pytest.raises(ReadError) as caught:
        open_source(path)
    offset = body.index(b"\xe9")
    assert str(caught.value) == (
        f"not UTF-8 text: byte 0xe9 at offset {offset} (re-save the file as UTF-8)"
    )


def test_non_utf8_bytes_in_ndjson_are_refused_too(tmp_path):
    body = b'{"a": 1, "b": "caf\xe9"}\n'
    path = write(tmp_path, "latin1.ndjson", body)
    with pytest.raises(ReadError, match=f"not UTF-8 text: byte 0xe9 at offset {body.index(233)}"):
        open_source(path)


def test_non_utf8_bytes_past_the_sniffed_start_fail_at_validation(tmp_path):
    body = b"a,b,c\n" + b"1,x,2.0\n" * (SNIFF_BYTES // 8 + 100) + b"2,caf\xe9,3.0\n"
    path = write(tmp_path, "late.csv", body)
    result = run(path)  # the first 64 KiB are clean: the file opens
    assert result.status == "rejected"
    assert result.read_error == "not UTF-8 text (re-save the file as UTF-8)"
    assert check(result, "readable").status == "fail"


def test_a_character_cut_by_the_sniff_limit_is_not_mistaken_for_bad_bytes(tmp_path):
    header = b"name\n"
    filler = b"x" * (SNIFF_BYTES - len(header) - 1)
    body = header + filler + "é".encode() + b"\nplain\n"  # 'é' straddles byte SNIFF_BYTES
    assert body[SNIFF_BYTES - 1 : SNIFF_BYTES + 1] == "é".encode()
    result = run(write(tmp_path, "cut.csv", body))
    assert result.status == "accepted"
    assert result.n_rows == 2


def test_a_header_longer_than_the_sniffed_start_is_read_whole(tmp_path):
    # Many long names: the header line ends past SNIFF_BYTES, inside 'amount_total', whose
    # first letters are an earlier column's whole name.
    names = ["amount"]
    while len(",".join(names)) < SNIFF_BYTES - 200:
        names.append(f"feature_{len(names):04d}_" + "x" * 100)
    names.append("p" * (SNIFF_BYTES - len(",".join(names)) - len(",,amount")))
    names.append("amount_total")
    header = ",".join(names)
    assert header[:SNIFF_BYTES].rsplit(",", 1)[1] == "amount"
    body = header + "\n" + ",".join(str(i) for i in range(len(names))) + "\n"
    path = write(tmp_path, "wide.csv", body)
    assert open_source(path).columns == names
    result = run(path)
    assert (result.status, result.n_rows, result.n_cols) == ("accepted", 1, len(names))


def test_a_first_line_longer_than_any_header_is_refused_by_name(tmp_path, monkeypatch):
    monkeypatch.setattr("mldeck.data.readers.HEADER_BYTES", SNIFF_BYTES * 2)
    path = write(tmp_path, "one line.csv", "x" * (SNIFF_BYTES * 3))
    with pytest.raises(ReadError) as caught:
        open_source(path)
    assert str(caught.value) == "the first line is longer than 128.0 KB: no CSV header"


def test_a_file_of_a_thousand_columns_keeps_its_blank_row_filter_out_of_the_scan(tmp_path):
    # Pushed into the CSV scan, the filter over every column costs polars' optimizer seconds
    # per thousand columns squared: minutes for 10,000 columns, before a row is read.
    names = [f"c{i}" for i in range(1000)]
    body = ",".join(names) + "\n" + ",".join("1" * 1000) + "\n\n" + ",".join("2" * 1000) + "\n"
    source = open_source(write(tmp_path, "wide.csv", body))
    assert "SELECTION" not in source.frame.explain()
    result = run(source.path)
    assert (result.status, result.n_rows) == ("accepted", 2)  # the blank line is still skipped


def test_exact_quantiles_are_one_aggregate_per_column(tmp_path):
    # One per quantile made polars sort each column seven times, and its streaming engine
    # hand each over to the in-memory one: minutes for a reference of a hundred columns.
    frame = pl.DataFrame({f"n{i}": [1.0, 2.0, 3.0, float("nan")] for i in range(20)})
    source = open_source(write_parquet(tmp_path, "ref.parquet", frame))
    plan = build(source, DataSettings(), None, exact_quantiles=True, arrived_at=ARRIVED)
    quantiles = [k for k in plan.aggregates if k.split("::")[-1].startswith("q")]
    assert len(quantiles) == 20
    # Collected by the in-memory engine in a pass of their own: in the streaming one, with the
    # other aggregates, their time grew with the square of their number (8 s for a reference
    # of 1,000 columns, 32 s for 2,000).
    assert plan.held == set(quantiles)
    profile = validate(source, DataSettings(), exact_quantiles=True).profile
    assert profile["columns"]["n3"]["quantiles"]["0.5"] == 2.0


def test_exact_quantiles_of_a_wide_reference_agree_with_numpy(tmp_path):
    rng = np.random.default_rng(3)
    values = rng.normal(size=(50, 300))
    frame = pl.DataFrame({f"c{i}": values[:, i] for i in range(300)})
    source = open_source(write_parquet(tmp_path, "wide.parquet", frame))
    profile = validate(source, DataSettings(), exact_quantiles=True).profile
    for i in (0, 151, 299):
        found = profile["columns"][f"c{i}"]["quantiles"]
        for q in ("0.01", "0.5", "0.99"):
            assert found[q] == pytest.approx(np.quantile(values[:, i], float(q)), rel=1e-12)


@pytest.mark.parametrize(("separator", "shown"), [(";", "';'"), ("\t", "'\\t'"), ("|", "'|'")])
def test_a_wrong_delimiter_is_named_not_read_as_one_column(tmp_path, separator, shown):
    text = separator.join("abc") + "\n" + separator.join(["1", "x", "2.0"]) + "\n"
    path = write(tmp_path, "wrong.csv", text)
    # What polars alone makes of it: one column named after the whole header line.
    assert pl.read_csv(path).columns == [separator.join("abc")]
    with pytest.raises(ReadError) as caught:
        open_source(path)
    assert f"the file looks {shown}-separated (set [data] csv_separator)" in str(caught.value)
    assert str(caught.value).startswith("one column named ")


def test_the_configured_separator_reads_the_file(tmp_path):
    path = write(tmp_path, "semi.csv", "a;b;c\n1;x;2.5\n")
    result = run(path, data_settings(csv_separator=";", columns=ABC))
    assert result.status == "accepted", result.reasons()
    assert result.schema == {"a": "Int64", "b": "String", "c": "Float64"}


def test_a_tsv_file_is_read_with_tabs_unless_another_separator_is_set(tmp_path):
    """The default separator is a comma; a file named .tsv says tab."""
    path = write(tmp_path, "t.tsv", "a\tb\tc\n1\tx\t2.5\n")
    source = open_source(path)
    assert (source.columns, source.separator) == (["a", "b", "c"], "\t")
    assert run(path, data_settings(columns=ABC)).status == "accepted"
    semi = write(tmp_path, "semi.tsv", "a;b;c\n1;x;2.5\n")
    assert open_source(semi, separator=";").columns == ["a", "b", "c"]


def test_short_rows_are_named_with_their_line_not_passed_as_nulls(tmp_path):
    path = write(tmp_path, "short.csv", "a,b,c\n1,x,1.5\n2,y\n3,z,2.5\n")
    assert pl.read_csv(path)["c"].null_count() == 1  # polars pads the short row silently
    # c may hold nulls: the row missing its field passed as one with an empty value
    result = run(path, data_settings(columns=ABC))
    fields = check(result, "fields")
    assert (fields.status, fields.failed_rows) == ("fail", 1)
    assert result.status == "rejected"
    assert result.reasons() == ["fields: 1 row has fewer fields than the header's 3: line 3 has 2"]
    expectations = data_settings(columns={**ABC, "c": {"type": "float", "nullable": False}})
    result = run(path, expectations)
    assert result.reasons() == ["fields: 1 row has fewer fields than the header's 3: line 3 has 2",
                                "nulls(c): 1 null (none allowed)"]  # fmt: skip
    rows = pl.read_parquet(rows_path(path))
    assert rows[ROW].to_list() == [1]
    assert rows[REASON].to_list() == ["nulls(c)"]
    # A producer leaving trailing empty fields out: warned, not rejected, when asked
    warned = run(path, data_settings(columns=ABC, table={"warn": ["fields"]}))
    assert (warned.status, check(warned, "fields").status) == ("warned", "warn")


def test_a_file_cut_short_is_said_to_be(tmp_path):
    # Copied while still being written (or an upload cut off): the last row ends mid-way.
    body = "a,b,c\n" + "".join(f"{i},x,{i}.5\n" for i in range(50)) + "50,x"
    reasons = reasons_of(write(tmp_path, "cut.csv", body), data_settings(columns=ABC))[1]
    assert reasons == [
        "fields: 1 row has fewer fields than the header's 3: line 52 has 2; it is the last line "
        "and ends without a line break: the file looks cut short (copied while still being "
        "written?)"
    ]
    two = "a,b,c\n1,x\n" + "".join(f"{i},x,{i}.5\n" for i in range(5)) + "50,x"
    assert reasons_of(write(tmp_path, "two.csv", two), data_settings(columns=ABC))[1] == [
        "fields: 2 rows have fewer fields than the header's 3: line 2 has 2; the last line is one "
        "of them and ends without a line break: the file looks cut short (copied while still "
        "being written?)"
    ]
    # A whole last line without a line break, a short line that does end with one: not cut
    whole = write(tmp_path, "whole.csv", "a,b,c\n1,x,\n2,y,2.5")
    assert reasons_of(whole, data_settings(columns=ABC)) == ("accepted", [])
    ended = reasons_of(write(tmp_path, "ended.csv", "a,b,c\n1,x,1.5\n2,y\n"), None)[1]
    assert ended == ["fields: 1 row has fewer fields than the header's 3: line 3 has 2"]


@pytest.mark.parametrize(
    ("body", "found"),
    [
        # empty fields, quoted separators and doubled quotes are fields like any other
        ('a,b,c\n1,,\n2,"x,y",\n3,"p""q,r",""\n"4",",",\n', None),
        # blank lines and lines of separators only are skipped, not short rows
        ("a,b,c\n1,x,\n\n,,\n,\n\r\n2,y,\n", None),
        # a quoted separator does not make up for a missing field
        ('a,b,c\n1,x,\n2,"x,y"\n3,y,\n', "line 3 has 2"),
        ('a,b,c\n1,x,\n"2,""q"",r"\n', "line 3 has 1"),
        # a quoted line break: lines are not records, read as CSV records instead
        ('a,b,c\n1,"x\ny",\n2,y\n3,z,\n', "line 4 has 2"),
        ('a,b,c\n1,"x\n\ny,z"\n3,z,\n', "line 2 has 2"),
        ('a;b;c\n1;"x;y";\n2;y\n', "line 3 has 2"),
        ('a\tb\tc\n1\t"x\ty"\t\n2\ty\n', "line 3 has 2"),
        # a quote inside a field not quoted is a character (polars reads three fields)
        ('a,b,c\n12" screen,15" monitor,ok\nx,y,\n', None),
    ],
)
def test_short_rows_are_counted_as_csv_reads_fields(tmp_path, body, found):
    settings = data_settings(csv_separator=next((c for c in ";\t" if c in body), ","))
    reasons = reasons_of(write(tmp_path, "rows.csv", body), settings)[1]
    short = [r for r in reasons if r.startswith("fields:")]
    assert short == ([] if found is None else [f"fields: 1 row has fewer fields than the "
                                               f"header's 3: {found}"])  # fmt: skip


def test_lines_are_looked_at_only_when_the_last_column_holds_nulls(tmp_path, monkeypatch):
    import mldeck.data.validate as validate_module

    looked = []
    monkeypatch.setattr(validate_module, "short_records", lambda *a: looked.append(a))
    run(write(tmp_path, "full.csv", "a,b,c\n1,,1.5\n2,y,2.5\n"))
    assert looked == []
    run(write(tmp_path, "nulls.csv", "a,b,c\n1,x,\n2,y,2.5\n"))
    assert len(looked) == 1


def test_blank_lines_are_skipped_not_read_as_rows_of_nulls(tmp_path):
    path = write(tmp_path, "blank.csv", "a,b,c\n1,x,2.0\n\n2,y,3.0\n\n")
    required = {name: {**spec, "nullable": False} for name, spec in ABC.items()}
    status, reasons = reasons_of(path, data_settings(columns=required))
    assert (status, reasons) == ("accepted", [])


def test_long_rows_are_a_read_error_naming_ragged_rows(tmp_path):
    path = write(tmp_path, "long.csv", "a,b,c\n1,x,2.0,9\n2,y,3.0\n")
    status, reasons = reasons_of(path, data_settings(columns=ABC))
    assert status == "rejected"
    assert len(reasons) == 1
    assert reasons[0].startswith("a row has more fields than the header (ragged rows)")
    assert reasons[0].endswith(": line 2 has 4 fields, the header 3")
    # A quoted separator or line break is one field: the line is found as the reader sees it.
    later = write(tmp_path, "later.csv", 'a,b,c\n1,"x,\ny",2.0\n2,y,3.0\n3,z,4.0,5\n')
    assert reasons_of(later, data_settings(columns=ABC))[1][0].endswith(
        ": line 5 has 4 fields, the header 3"
    )


def test_duplicate_column_names_are_refused_not_renamed(tmp_path):
    path = write(tmp_path, "dup.csv", "a,b,a\n1,x,2\n")
    assert pl.read_csv(path).columns == ["a", "b", "a_duplicated_0"]  # what polars does alone
    with pytest.raises(ReadError, match=r"^duplicate column name 'a' \(columns 1 and 3\)$"):
        open_source(path)


def test_an_empty_column_name_is_refused(tmp_path):
    with pytest.raises(ReadError, match="a column has an empty name in the header"):
        open_source(write(tmp_path, "unnamed.csv", "a,,c\n1,2,3\n"))


def test_a_column_of_the_wrong_type_counts_the_values_that_do_not_convert(tmp_path):
    path = write(tmp_path, "wrongtype.csv", "a,b,c\n1,x,1.0\nn/a,y,2.0\n3,z,3.0\nerror,w,4.0\n")
    result = run(path, data_settings(columns=ABC))
    assert result.schema["a"] == "String"  # one bad value turns the whole column into text
    typed = check(result, "type", "a")
    assert (typed.status, typed.failed_rows) == ("fail", 2)
    assert typed.detail == "2 values are not int (column read as String)"
    assert [e["a"] for e in typed.examples] == ["n/a", "error"]
    # The profile still describes the column as the declared type.
    assert result.profile["columns"]["a"]["kind"] == "int"
    assert result.profile["columns"]["a"]["nulls"] == 2


def test_an_all_null_column_fails_a_nulls_expectation(tmp_path):
    path = write(tmp_path, "allnull.csv", "a,b,c\n1,x,\n2,y,\n3,z,\n")
    expectations = data_settings(columns={**ABC, "c": {"type": "float", "nullable": False}})
    result = run(path, expectations)
    assert result.status == "rejected"
    assert check(result, "type", "c").status == "pass"  # nothing there to be of a wrong type
    nulls = check(result, "nulls", "c")
    assert (nulls.failed_rows, nulls.detail) == (3, "3 nulls (none allowed)")
    column = result.profile["columns"]["c"]
    assert (column["count"], column["nulls"], column["mean"]) == (0, 3, None)


def test_a_null_share_just_over_its_limit_does_not_read_as_equal(tmp_path):
    """1 null in 29 rows (3.45 %) against at most 3.4 % read "3.4% of rows; at most 3.4%"."""
    rows = "".join(f"{i},x,{'' if i == 0 else 1.5}\n" for i in range(29))
    path = write(tmp_path, "share.csv", "a,b,c\n" + rows)
    result = run(path, data_settings(columns={**ABC, "c": {"type": "float",
                                                           "max_null_fraction": 0.034}}))  # fmt: skip
    nulls = check(result, "nulls", "c")
    assert (nulls.status, nulls.detail) == ("fail", "1 null (3.45% of rows; at most 3.40% allowed)")


def test_an_all_null_parquet_column_of_type_null_is_profiled(tmp_path):
    frame = pl.DataFrame({"a": [1, 2], "c": [None, None]})
    path = write_parquet(tmp_path, "nullcol.parquet", frame)
    result = run(path, data_settings(columns={"a": {}, "c": {"max_null_fraction": 0.5}}))
    assert result.schema["c"] == "Null"
    nulls = check(result, "nulls", "c")
    assert (nulls.status, nulls.failed_rows) == ("fail", 2)
    assert nulls.detail == "2 nulls (100.0% of rows; at most 50.0% allowed)"
    assert result.profile["columns"]["c"] == {"kind": "null", "count": 0, "nulls": 2}


def test_nan_and_infinities_fail_the_finite_check_unless_allowed(tmp_path):
    path = write(tmp_path, "naninf.csv", "c\n1.0\nNaN\ninf\n-inf\n2.0\n")
    result = run(path, data_settings(columns={"c": {"type": "float"}}))
    finite = check(result, "finite", "c")
    assert (finite.status, finite.failed_rows) == ("fail", 3)
    assert finite.detail == "3 NaN or infinite values"
    assert [e["c"] for e in finite.examples] == ["nan", "inf", "-inf"]  # JSON-safe text
    profile = result.profile["columns"]["c"]
    assert (profile["nan"], profile["inf"], profile["min"], profile["max"]) == (1, 2, 1.0, 2.0)
    assert profile["mean"] == 1.5

    only_nan = run(path, data_settings(columns={"c": {"type": "float", "allow_nan": True}}))
    assert check(only_nan, "finite", "c").failed_rows == 2
    both = {"c": {"type": "float", "allow_nan": True, "allow_inf": True}}
    allowed = run(path, data_settings(columns=both))
    assert allowed.status == "accepted"
    assert not [c for c in allowed.checks if c.check == "finite"]


@pytest.mark.parametrize(("body", "near"), [
    ('id,name\n1,ok\n5,12" screen\n', "line 3: a quote inside a field that is not quoted"),
    ('id,name\n7,z\n1,"a"b\n2,c\n', "line 3: text after a closing quote"),
    ('id,name\n1,a\n2,"b\n3,c\n', "line 3: a quote opened and never closed"),
    # A quoted field holding the separator and doubled quotes is no stray quote.
    ('id,name\n1,"say ""hi"" there, friend"\n2,ok\n3,12" screen\n',
     "line 4: a quote inside a field that is not quoted"),
])  # fmt: skip
def test_a_quote_polars_cannot_read_is_named_with_its_line(tmp_path, body, near):
    """'CSV malformed: expected 0 rows, actual 2 rows, in chunk starting at row_offset 0' and
    "could not parse `\"b` as dtype `str`": polars' cause was cut off, and no line named."""
    status, reasons = reasons_of(write(tmp_path, "q.csv", body))
    assert status in ("unreadable", "rejected")  # found as it opens, or as it is read
    (reason,) = reasons
    assert reason == (f"a quote the CSV reader cannot read, {near} (a field holding quotes is "
                      'quoted whole and its quotes doubled: "12"" screen")')  # fmt: skip
    fine = write(tmp_path, "fine.csv", 'id,name\n7,"z, y"\n1,"a ""q"" b"\n8,"two\nlines"\n')
    assert run(fine).status == "accepted"


def test_columns_named_like_the_offending_rows_own_are_kept_beside_them(tmp_path):
    """A column named _mldeck_row or _mldeck_reason made a file with a failing row
    "unreadable" (a duplicate column in the offending rows' file): its verdict was lost."""
    path = write(tmp_path, "clash.csv", "x,_mldeck_row,_mldeck_reason\n500,r1,q\n7,r2,q\n")
    result = run(path, data_settings(columns={"x": {"type": "int", "max": 100}}))
    assert result.status == "rejected" and result.read_error is None
    (example,) = check(result, "max", "x").examples
    assert example == {"_mldeck_row": 0, "x": 500, "_mldeck_row (file)": "r1",
                       "_mldeck_reason (file)": "q"}  # fmt: skip


def test_an_ndjson_object_without_fields_is_kept_as_its_text(tmp_path):
    """'{}' in an NDJSON field made a file with a failing row "not valid NDJSON": Parquet, where
    the offending rows are kept, has no struct without fields."""
    lines = '{"x":500,"z":{}}\n{"x":6,"z":{}}\n'
    result = run(write(tmp_path, "empty.ndjson", lines),
                 data_settings(columns={"x": {"type": "int", "max": 100}}))  # fmt: skip
    assert result.status == "rejected" and result.read_error is None
    assert check(result, "max", "x").examples == [{"_mldeck_row": 0, "x": 500, "z": "{}"}]
    # One level down, the rows are not kept; the file is not said to be invalid NDJSON.
    nested = write(tmp_path, "nested.ndjson", '{"x":500,"z":{"a":{}}}\n{"x":6,"z":{"a":{}}}\n')
    result = run(nested, data_settings(columns={"x": {"type": "int", "max": 100}}))
    detail = check(result, "max", "x").detail
    assert "the offending rows were not kept: " in detail and "not valid NDJSON" not in detail


def test_offending_rows_that_cannot_be_kept_leave_the_verdict_and_say_so(tmp_path, monkeypatch):
    """Any other type the offending rows' file cannot hold: the file was read and counted, and
    is judged on that (it was called unreadable), the check saying why it has no examples."""
    from mldeck.data import validate as module

    def refuse(*_args: Any) -> int:
        raise pl.exceptions.InvalidOperationError("Unable to write this type to Parquet")

    monkeypatch.setattr(module, "_write_offending", refuse)
    path = write(tmp_path, "b.csv", "x\n500\n7\n")
    result = run(path, data_settings(columns={"x": {"type": "int", "max": 100}}))
    assert result.status == "rejected" and result.read_error is None
    detail = check(result, "max", "x").detail
    assert detail.startswith("1 value above 100 (the offending rows were not kept: ")
    assert "Unable to write this type to Parquet" in detail


def test_a_ten_megabyte_field_is_read_and_kept_short_in_examples(tmp_path):
    big = "x" * (10 * 1024 * 1024)
    path = write(tmp_path, "big.csv", f"a,b\n1,{big}\n2,ok\n")
    result = run(path, data_settings(columns={"a": {}, "b": {"pattern": "^[a-z]{1,20}$"}}))
    assert result.n_rows == 2
    pattern = check(result, "pattern", "b")
    assert (pattern.status, pattern.failed_rows) == ("fail", 1)
    shown = pattern.examples[0]["b"]
    assert len(shown) == 200 and shown.endswith("…")
    assert pl.read_parquet(rows_path(path))["b"].str.len_chars().to_list() == [len(big)]


def _parquet_bytes() -> bytes:
    buffer = io.BytesIO()
    pl.DataFrame({"a": range(50), "b": [f"v{i}" for i in range(50)]}).write_parquet(buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(lambda b: b[:4], id="magic-only"),
        pytest.param(lambda b: b[: len(b) // 2], id="half"),
        pytest.param(lambda b: b[:-1], id="last-byte-missing"),
        pytest.param(lambda b: b[:-12] + b"PAR1", id="footer-length-gone"),
        pytest.param(lambda b: b[:8] + b[len(b) // 2 :], id="middle-missing"),
    ],
)
def test_a_truncated_parquet_file_is_named_as_such(tmp_path, cut):
    path = write(tmp_path, "cut.parquet", cut(_parquet_bytes()))
    status, reasons = reasons_of(path)
    assert status in ("unreadable", "rejected")
    assert len(reasons) == 1
    assert "Parquet file" in reasons[0]
    assert "truncated" in reasons[0]


def test_a_file_deleted_before_it_is_opened(tmp_path):
    with pytest.raises(ReadError, match=r"^the file disappeared before it could be read$"):
        open_source(tmp_path / "gone.csv")


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".ndjson"])
def test_a_file_deleted_between_opening_and_reading(tmp_path, suffix):
    path = tmp_path / f"soon-gone{suffix}"
    frame = pl.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    {".csv": frame.write_csv, ".parquet": frame.write_parquet, ".ndjson": frame.write_ndjson}[
        suffix
    ](path)
    source = open_source(path)
    path.unlink()
    result = validate(source, DataSettings(), offending_path=rows_path(path))
    assert result.status == "rejected"
    assert result.reasons() == ["the file disappeared before it could be read"]


def test_a_name_with_spaces_and_unicode_reads(tmp_path):
    path = write(tmp_path, "my batch é 数据 ✓.csv", "a,b\n1,x\n")
    result = run(path)
    assert (result.status, result.n_rows, result.n_cols) == ("accepted", 1, 2)


def test_the_format_comes_from_the_bytes_when_the_suffix_says_nothing(tmp_path):
    parquet = tmp_path / "upload"
    pl.DataFrame({"a": [1, 2, 3]}).write_parquet(parquet)
    assert open_source(parquet).file_format == "parquet"
    ndjson = write(tmp_path, "records", '{"a": 1}\n{"a": 2}\n')
    assert open_source(ndjson).file_format == "ndjson"
    assert run(ndjson).n_rows == 2


def test_broken_ndjson_is_named(tmp_path):
    with pytest.raises(ReadError, match=r"^not valid NDJSON: "):
        open_source(write(tmp_path, "broken.ndjson", '{"a": 1}\n{"a": 2,\n'))


def test_ndjson_starting_with_a_byte_order_mark_reads(tmp_path):
    """Some Windows tools begin UTF-8 text with a byte order mark; polars would call it bad JSON."""
    bom = b"\xef\xbb\xbf"
    path = write(tmp_path, "bom.ndjson", bom + b'{"a": 1, "b": "x"}\n{"a": 2, "b": "y"}\n')
    result = run(path, data_settings(columns={"a": {"type": "int", "min": 2}, "b": {}}))
    assert (result.read_error, result.n_rows, result.schema) == (
        None,
        2,
        {"a": "Int64", "b": "String"},
    )
    assert check(result, "min", "a").failed_rows == 1
    assert pl.read_parquet(rows_path(path))[ROW].to_list() == [0]  # the second pass reads it too
    # A broken line further on is still named by its number.
    with pytest.raises(ReadError, match=r"^not valid NDJSON: line 2: "):
        open_source(write(tmp_path, "broken.ndjson", bom + b'{"a": 1}\n{"a": 2,\n'))


def test_a_csv_starting_with_a_byte_order_mark_reads_its_first_column_as_asked(tmp_path):
    """The header's first name is the column's name, not the mark and the name: a late value
    unlike the first rows in the first column is read as text and checked, not unreadable."""
    body = "".join(f"{i},a\n" for i in range(10_050))
    path = write(tmp_path, "bom.csv", b"\xef\xbb\xbf" + f"id,k\n{body}x7,b\n".encode())
    assert open_source(path, types={"id": pl.String()}).schema["id"] == pl.String
    result = run(path, data_settings(columns={"id": {"type": "int"}, "k": {}}))
    assert result.read_error is None, result.read_error
    assert check(result, "type", "id").failed_rows == 1


@settings(max_examples=80, deadline=None, derandomize=True, database=None)
@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.lists(
            st.sampled_from(["a", "b", ",", ";", "\n", '"', "1", "2.5", "NaN", "\xe9", " ", "\r"]),
            max_size=60,
        ).map(lambda parts: "".join(parts).encode("utf-8")),
        st.builds(
            lambda head, cut: head[:cut],
            st.just(_parquet_bytes()),
            st.integers(min_value=0, max_value=4000),
        ),
    ),
    suffix=st.sampled_from([".csv", ".parquet", ".ndjson", ".txt", ""]),
)
def test_any_bytes_give_a_reason_or_a_result_never_a_crash(body, suffix):
    with tempfile.TemporaryDirectory() as folder:
        path = write(Path(folder), f"fuzz{suffix}", body)
        status, reasons = reasons_of(path, data_settings(columns=ABC))
    assert status in ("unreadable", "rejected", "accepted", "warned")
    if status in ("unreadable", "rejected"):
        assert reasons and all(isinstance(r, str) and r.strip() for r in reasons)


# -- column checks ----------------------------------------------------------------------------

NAN, INF = math.nan, math.inf

# (check, expectation for column v, good values, bad values, offending rows in the bad values)
COLUMN_CASES = [
    ("nulls", {"nullable": False}, [1.0, 2.0, 3.0], [1.0, None, None, 4.0], 2),
    ("nulls", {"max_null_fraction": 0.3}, [1.0, None, 3.0, 4.0], [None, None, 3.0, 4.0], 2),
    ("type", {"type": "int"}, ["1", " 2 ", None], ["1", "n/a", "2.5", None, "x"], 3),
    ("type", {"type": "float"}, ["1", "2.5", "1e3", None], ["1.5", "n/a", "", None], 2),
    ("finite", {}, [1.0, -2.0, None], [1.0, NAN, INF, -INF, None], 3),
    (
        "min",
        {"min": 0, "allow_nan": True, "allow_inf": True},
        [0.0, None, NAN, -INF],
        [-1.0, 0.0, -0.5, None, NAN, -INF],
        2,
    ),
    ("max", {"max": 10}, [10, 3, None], [11, 10, 12, None, 100], 3),
    ("categories", {"categories": ["a", "b"]}, ["a", "b", None], ["a", "c", "d", None, "A"], 3),
    ("unique", {"unique": True}, ["a", "b", None, None], ["a", "b", "a", None, "c", "b"], 4),
    ("pattern", {"pattern": r"^[A-Z]{2}\d+$"}, ["AB1", "CD22", None], ["AB1", "ab1", "X", "AB"], 3),
    ("expression", {"expression": "v >= 0 AND v < 100"}, [0, 99, None], [0, -1, 100, 5, None], 2),
]
CASE_IDS = [f"{case[0]}-{i}" for i, case in enumerate(COLUMN_CASES)]


def _one_column(folder: Path, name: str, values: list) -> Path:
    return write_parquet(folder, name, pl.DataFrame({"v": values}, strict=False))


@pytest.mark.parametrize(
    ("name", "expectation", "good", "bad", "count"), COLUMN_CASES, ids=CASE_IDS
)
def test_each_column_check_passes_good_data_and_counts_bad_rows(
    tmp_path, name, expectation, good, bad, count
):
    expectations = data_settings(columns={"v": expectation})
    passed = run(_one_column(tmp_path, "good.parquet", good), expectations)
    assert check(passed, name, "v").status == "pass"
    assert passed.status == "accepted", passed.reasons()

    failed = run(_one_column(tmp_path, "bad.parquet", bad), expectations)
    result = check(failed, name, "v")
    assert (result.status, result.severity, result.failed_rows) == ("fail", "error", count)
    assert failed.status == "rejected"
    assert any(r.startswith(f"{name}(v): ") for r in failed.reasons())


@pytest.mark.parametrize(
    ("name", "expectation", "good", "bad", "count"), COLUMN_CASES, ids=CASE_IDS
)
def test_a_warn_only_check_flags_the_batch_but_accepts_it(
    tmp_path, name, expectation, good, bad, count
):
    result = run(
        _one_column(tmp_path, "bad.parquet", bad),
        data_settings(columns={"v": {**expectation, "warn": [name]}}),
    )
    warned = check(result, name, "v")
    assert (warned.status, warned.severity, warned.failed_rows) == ("warn", "warning", count)
    if all(c.status != "fail" for c in result.checks):
        assert result.status == "warned"


def test_a_column_severity_of_warning_downgrades_all_its_checks(tmp_path):
    path = _one_column(tmp_path, "bad.parquet", [-1.0, NAN, 500.0, None])
    expectation = {"min": 0, "max": 10, "nullable": False, "severity": "warning"}
    result = run(path, data_settings(columns={"v": expectation}))
    assert result.status == "warned"
    assert {c.check: c.status for c in result.failed} == {
        "min": "warn",
        "max": "warn",
        "finite": "warn",
        "nulls": "warn",
    }


def test_the_pattern_is_searched_for_not_matched_whole(tmp_path):
    path = _one_column(tmp_path, "codes.parquet", ["ab-12", "12", "zz"])
    result = run(path, data_settings(columns={"v": {"pattern": r"\d"}}))
    assert check(result, "pattern", "v").failed_rows == 1


@pytest.mark.parametrize(
    ("pattern", "needle"),
    [
        (r"(?=a)b", "look-around, including look-ahead and look-behind, is not supported"),
        (r"(\w)\1", "backreferences are not supported"),
    ],
)
def test_a_pattern_polars_cannot_run_is_refused_when_the_settings_load(pattern, needle):
    """Python's re accepts these, polars (which runs the check) does not: as a check it would
    fail every batch, so it is a mistake in mldeck.toml, naming the column and the pattern."""
    from mldeck.config import parse_settings
    from mldeck.errors import ConfigError

    text = f"[data.columns.code]\npattern = '{pattern}'\n"
    with pytest.raises(ConfigError) as caught:
        parse_settings(text)
    said = str(caught.value)
    assert said == (f"mldeck.toml: 'pattern' in [data.columns.code]: {pattern!r} is not a "
                    f"regular expression polars can run: {needle}")  # fmt: skip


def test_a_pattern_in_polars_syntax_that_python_refuses_is_accepted(tmp_path):
    r"""``\p{L}`` (a letter of any script) is Rust regex syntax; Python's re refuses it."""
    path = _one_column(tmp_path, "names.parquet", ["Zoë", "42", None])
    result = run(path, data_settings(columns={"v": {"pattern": r"^\p{L}+$"}}))
    assert check(result, "pattern", "v").failed_rows == 1


def test_a_pattern_the_plan_cannot_run_is_a_failed_check_of_its_severity(tmp_path):
    """Settings made without validation (model_construct) still never make the file unreadable."""
    from mldeck.data.expectations import ColumnExpectation

    path = _one_column(tmp_path, "text.parquet", ["ab", "cd"])
    for severity, status in (("error", "fail"), ("warning", "warn")):
        column = ColumnExpectation.model_construct(pattern="(?=a)b", severity=severity)
        result = run(path, DataSettings.model_construct(columns={"v": column}))
        assert result.read_error is None
        failed = check(result, "pattern", "v")
        assert failed.status == status
        assert failed.detail.startswith("invalid pattern '(?=a)b': regex error")
        assert result.profile["columns"]["v"]["count"] == 2  # the rest of the plan still ran


@pytest.mark.parametrize(
    ("expression", "needle"),
    [
        ("v >>> 2", "unable to parse 'v >>> 2' as Expr"),
        ("", "unable to parse '' as Expr"),
        ("SELECT v FROM t", "expected an expression (found 'SELECT' clause)"),
        ('__import__("os").system("x")', "dot-notation field access is currently unsupported"),
    ],
)
def test_an_expression_that_does_not_parse_is_refused_when_the_settings_load(expression, needle):
    """As a check it would reject every batch as if the data were bad: it is a mistake in
    mldeck.toml, said in one line like a pattern that is not a regular expression."""
    with pytest.raises(ValueError, match="not a valid polars SQL expression: ") as caught:
        data_settings(columns={"v": {"expression": expression}})
    assert needle in str(caught.value)
    said = str(caught.value).split("not a valid polars SQL expression: ")[1].splitlines()[0]
    assert len(said.split(" [type=value_error")[0]) <= 120  # pydantic's own suffix aside


@pytest.mark.parametrize(
    ("expression", "needle"),
    [
        ("no_such_column > 1", 'unable to find column "no_such_column"'),
        ("w + 1 > 0", "arithmetic on dtypes str"),
        ("v > 'x'", "cannot compare string with numeric"),
        ("v + 1", "it gives Int64, not true or false"),
    ],
)
def test_an_invalid_expression_is_a_failed_check_not_a_crash(tmp_path, expression, needle):
    path = write_parquet(
        tmp_path, "t.parquet", pl.DataFrame({"v": [1, 2, 3], "w": ["a", "b", "c"]})
    )
    result = run(path, data_settings(columns={"v": {"expression": expression, "max": 2}, "w": {}}))
    assert result.read_error is None, result.read_error
    failed = check(result, "expression", "v")
    assert failed.status == "fail"
    assert failed.detail.startswith(f"invalid expression {expression!r}: ")
    assert needle in failed.detail
    # Everything else was still checked and profiled.
    assert check(result, "max", "v").failed_rows == 1
    assert result.profile["columns"]["v"]["max"] == 3.0


def test_an_expression_can_use_other_columns_and_sql_functions(tmp_path):
    frame = pl.DataFrame({"v": [2, 5, 3], "w": ["a", "bb", "ccc"]})
    path = write_parquet(tmp_path, "t.parquet", frame)
    expression = "length(w) < v"
    result = run(path, data_settings(columns={"v": {"expression": expression}, "w": {}}))
    failed = check(result, "expression", "v")
    assert (failed.failed_rows, failed.detail) == (1, f"1 rows where {expression!r} is false")
    assert failed.examples == [{ROW: 2, "v": 3, "w": "ccc"}]


def test_an_expression_naming_an_unknown_column_lists_only_the_files_columns(tmp_path):
    """Not the plan's own derived columns (``_mldeck_tmp_0``...), which a person cannot name."""
    path = write(tmp_path, "t.csv", "v,w\n1,a\n2,b\n")
    columns = {"v": {"type": "float", "expression": "no_such > 1"}, "w": {"type": "int"}}
    failed = check(run(path, data_settings(columns=columns)), "expression", "v")
    assert failed.status == "fail"
    assert 'unable to find column "no_such"' in failed.detail
    assert "_mldeck" not in failed.detail
    assert failed.detail.endswith('valid columns: ["v", "w"]')


@pytest.mark.parametrize("check_name", ["min", "max"])
def test_a_bound_on_a_text_column_is_a_failed_check_not_an_unreadable_file(tmp_path, check_name):
    path = _one_column(tmp_path, "text.parquet", ["ab", "cd"])
    result = run(path, data_settings(columns={"v": {check_name: 1, "categories": ["ab"]}}))
    assert result.read_error is None
    failed = check(result, check_name, "v")
    assert failed.status == "fail"
    assert failed.detail.startswith(f"{check_name} needs numbers but the column is string")
    assert check(result, "categories", "v").failed_rows == 1  # the rest still ran


# -- table checks -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "n", "status", "detail"),
    [
        ({"min_rows": 5}, 5, "pass", "5 rows"),
        ({"min_rows": 5}, 4, "fail", "4 rows (at least 5 expected)"),
        ({"max_rows": 5}, 5, "pass", "5 rows"),
        ({"max_rows": 5}, 6, "fail", "6 rows (at most 5 expected)"),
        ({"max_rows": 5, "warn": ["rows"]}, 6, "warn", "6 rows (at most 5 expected)"),
    ],
)
def test_row_count_bounds(tmp_path, table, n, status, detail):
    path = _one_column(tmp_path, "n.parquet", list(range(n)))
    rows = check(run(path, data_settings(table=table)), "rows")
    assert (rows.status, rows.detail) == (status, detail)


@pytest.mark.parametrize("zone", [None, "UTC", "Europe/Paris"])
def test_freshness_is_judged_against_the_arrival_time(tmp_path, zone):
    expectations = data_settings(timestamp_column="ts", table={"max_age_days": 2})
    fresh = [datetime(2026, 3, 1), datetime(2026, 3, 9, 12)]  # newest: 1 day before arrival
    stale = [datetime(2026, 2, 1), datetime(2026, 3, 1, 12)]  # newest: 9 days before arrival
    for name, values, status, detail in (
        ("fresh", fresh, "pass", "ok"),
        ("stale", stale, "fail", "newest row is 9.0 days old (at most 2 allowed)"),
    ):
        series = pl.Series("ts", values, dtype=pl.Datetime("us"))
        if zone:
            series = series.dt.replace_time_zone("UTC").dt.convert_time_zone(zone)
        path = write_parquet(tmp_path, f"{name}.parquet", series.to_frame())
        freshness = check(run(path, expectations), "freshness")
        assert (freshness.status, freshness.detail) == (status, detail)


def test_freshness_reads_timestamps_written_as_text(tmp_path):
    path = write(tmp_path, "ts.csv", "ts,v\n2026-03-01 10:00:00,1\n2026-03-02 12:00:00,2\n")
    expectations = data_settings(timestamp_column="ts", table={"max_age_days": 7})
    freshness = check(run(path, expectations), "freshness")
    assert (freshness.status, freshness.detail) == (
        "fail",
        "newest row is 8.0 days old (at most 7 allowed)",
    )


def test_unique_ids_counts_every_row_that_shares_an_id(tmp_path):
    frame = pl.DataFrame({"id": [1, 2, 2, 3, 4, 4, 4, None, None], "v": range(9)})
    path = write_parquet(tmp_path, "ids.parquet", frame)
    result = run(path, data_settings(id_column="id"))
    ids = check(result, "unique_ids", "id")
    assert (ids.status, ids.failed_rows) == ("fail", 5)
    assert ids.detail == "5 rows share an id with another row"
    assert pl.read_parquet(rows_path(path))[ROW].to_list() == [1, 2, 4, 5, 6]
    assert run(path, data_settings(id_column="id", table={"unique_ids": False})).status == (
        "accepted"
    )


def test_the_duplicates_checks_stream_and_count_as_before(tmp_path):
    """is_duplicated in the first pass made polars hold the whole file (3.2 GB of memory for a
    1 GB CSV with [data] id_column): it is counted against the distinct count instead, and the
    shared values are found by a group-by only when there are some."""
    frame = pl.DataFrame({"id": [1, 2, 2, 3, None, None], "code": ["a", "b", "c", "c", "c", None]})
    path = write_parquet(tmp_path, "dups.parquet", frame)
    settings = data_settings(id_column="id", columns={"id": {}, "code": {"unique": True}})
    plan = build(open_source(path), settings, None, exact_quantiles=False, arrived_at=ARRIVED)
    assert not any("is_duplicated" in str(expr) for expr in first_pass(plan).values())
    result = run(path, settings)
    assert (
        check(result, "unique_ids", "id").failed_rows,
        check(result, "unique", "code").failed_rows,
    ) == (2, 3)
    assert pl.read_parquet(rows_path(path))[ROW].to_list() == [1, 2, 3, 4]
    clean = write_parquet(tmp_path, "clean.parquet", frame.head(2))
    assert run(clean, settings).status == "accepted"


def test_the_most_frequent_values_without_a_reference_are_counted_beside_the_first_pass(
    tmp_path, monkeypatch
):
    """value_counts among the first pass's aggregates made polars hold the whole file (1.3 GB
    for 1 GB of CSV); a group-by per text column, collected with the first pass, reads it once."""
    path = write(tmp_path, "t.csv", "k,n\nb,1\na,2\nb,3\nc,4\na,5\nb,6\n,7\n")
    plan = build(open_source(path), DataSettings(), None, exact_quantiles=False, arrived_at=ARRIVED)
    assert not any("value_counts" in str(expr) for expr in first_pass(plan).values())
    reads = _watch_reads(monkeypatch, path)
    result = validate(open_source(path), DataSettings())
    assert reads == ["collect"]
    column = result.profile["columns"]["k"]
    assert column["frequencies"] == {"b": 3, "a": 2, "c": 1} and column["other"] == 0


def test_missing_and_unexpected_columns(tmp_path):
    path = write_parquet(tmp_path, "t.parquet", pl.DataFrame({"a": [1], "extra": [2]}))
    expectations = {"a": {}, "b": {}, "c": {"required": False}}
    result = run(path, data_settings(columns=expectations))
    problems = sorted(c.detail for c in result.checks if c.check == "columns")
    assert problems == ["missing columns: b", "unexpected columns: 'extra'"]
    assert result.status == "rejected"
    allowed = run(path, data_settings(columns=expectations, table={"allow_extra_columns": True}))
    assert [c.detail for c in allowed.failed] == ["missing columns: b"]
    # Without declared columns the schema is not checked at all.
    assert run(path).status == "accepted"


def test_checks_decided_before_reading_follow_their_severity(tmp_path):
    """Missing and unexpected columns, a bound on text, an expression that cannot run: configured
    as warnings, they flag the batch and accept it."""
    path = write_parquet(tmp_path, "t.parquet", pl.DataFrame({"a": ["x"], "extra": [2]}))
    result = run(path, data_settings(columns={"a": {}, "b": {}}, table={"warn": ["columns"]}))
    assert result.status == "warned"
    assert sorted((c.status, c.detail) for c in result.failed) == [
        ("warn", "missing columns: b"),
        ("warn", "unexpected columns: 'extra'"),
    ]
    # A missing column whose own "present" check is a warning warns; the others fail.
    columns = {"a": {}, "extra": {}, "b": {"warn": ["present"]}, "c": {"severity": "warning"},
               "d": {}}  # fmt: skip
    result = run(path, data_settings(columns=columns))
    assert result.status == "rejected"
    assert [(c.status, c.severity, c.detail) for c in result.failed] == [
        ("fail", "error", "missing columns: d"),
        ("warn", "warning", "missing columns: b, c"),
    ]
    del columns["d"]
    assert run(path, data_settings(columns=columns)).status == "warned"
    columns = {"a": {"min": 1, "expression": "a + 1 > 0", "warn": ["min", "expression"]},
               "extra": {}}  # fmt: skip
    result = run(path, data_settings(columns=columns))
    assert result.status == "warned"
    assert {(c.check, c.status) for c in result.failed} == {("min", "warn"), ("expression", "warn")}


def test_table_checks_whose_column_is_not_in_the_file_fail_naming_it(tmp_path):
    """A freshness or unique-ids check that cannot run is not a check passed."""
    path = write_parquet(tmp_path, "t.parquet", pl.DataFrame({"v": [1, 1]}))
    table: dict[str, Any] = {"max_age_days": 2}
    expectations = data_settings(id_column="id", timestamp_column="ts", table=table)
    result = run(path, expectations)
    assert result.status == "rejected"
    ids, freshness = check(result, "unique_ids", "id"), check(result, "freshness")
    assert (ids.status, ids.detail) == (
        "fail",
        "the id column 'id' ([data] id_column) is not in the file",
    )
    assert (freshness.status, freshness.detail) == (
        "fail",
        "the timestamp column 'ts' ([data] timestamp_column) is not in the file",
    )
    warned = run(path, expectations.model_copy(update={"table": data_settings(
        timestamp_column="ts", table={**table, "warn": ["freshness", "unique_ids"]}).table}))  # fmt: skip
    assert warned.status == "warned"
    # Without these checks, the columns are not asked for.
    assert run(path, data_settings(id_column="id", timestamp_column="ts",
                                   table={"unique_ids": False})).status == "accepted"  # fmt: skip


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        ([int(ARRIVED.timestamp() * 1_000_000) - 1], "int"),  # as microseconds: fresh
        ([1.5, 2.5], "float"),
    ],
)
def test_freshness_on_a_numeric_column_fails_as_not_timestamps(tmp_path, values, kind):
    path = write_parquet(tmp_path, "n.parquet", pl.DataFrame({"ts": values}))
    expectations = data_settings(timestamp_column="ts", table={"max_age_days": 2})
    freshness = check(run(path, expectations), "freshness")
    assert (freshness.status, freshness.detail) == (
        "fail",
        f"the timestamp column 'ts' holds {kind} values, not timestamps",
    )


def test_min_rows_above_max_rows_is_refused_when_the_settings_load():
    from mldeck.config import parse_settings
    from mldeck.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        parse_settings("[data.table]\nmin_rows = 5\nmax_rows = 2\n")
    assert str(caught.value) == (
        "mldeck.toml: 'table' in [data]: min_rows (5) is above max_rows (2): no batch could pass"
    )
    assert data_settings(table={"min_rows": 2, "max_rows": 2}).table.max_rows == 2


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("[data.columns.x]\nmin = 3\nmax = 1\n", "'x' in [data.columns]: min (3.0) is above max (1.0)"),
        ("[data.columns.x]\nwarn = ['bogus']\n", "'warn' in [data.columns.x]: unknown check 'bogus'"),
        ("[data.table]\nwarn = ['bogus']\n", "'warn' in [data.table]: unknown check 'bogus'"),
        ("[data.columns.x]\nexpression = 'x >>> 1'\n",
         "'expression' in [data.columns.x]: not a valid polars SQL expression: "),
    ],
)  # fmt: skip
def test_a_refused_expectation_says_only_the_problem(text, said):
    """Not pydantic's "Value error, " before it."""
    from mldeck.config import parse_settings
    from mldeck.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        parse_settings(text)
    assert str(caught.value).startswith(f"mldeck.toml: {said}")
    assert "Value error" not in str(caught.value)


# -- offending rows and examples ----------------------------------------------------------------


def test_the_offending_rows_file_holds_exactly_the_offending_rows_with_reasons(tmp_path):
    frame = pl.DataFrame(
        {
            "v": [5.0, -1.0, 3.0, 50.0, -2.0, None, 7.0],
            "k": ["a", "a", "z", "b", "z", "a", "b"],
        }
    )
    path = write_parquet(tmp_path, "t.parquet", frame)
    expectations = {"v": {"min": 0, "max": 10}, "k": {"categories": ["a", "b"]}}
    result = run(path, data_settings(columns=expectations))
    rows = pl.read_parquet(rows_path(path))
    assert rows.columns == [ROW, "v", "k", REASON]
    assert rows[ROW].to_list() == [1, 2, 3, 4]
    assert rows[REASON].to_list() == ["min(v)", "categories(k)", "max(v)", "min(v); categories(k)"]
    # The rows are the original rows, unchanged.
    assert rows.drop(ROW, REASON).equals(frame[[1, 2, 3, 4]])
    assert result.offending_rows == 4
    assert (check(result, "min", "v").failed_rows, check(result, "max", "v").failed_rows) == (2, 1)


def test_a_clean_batch_leaves_no_offending_rows_file(tmp_path):
    path = _one_column(tmp_path, "t.parquet", [1.0, 2.0])
    result = run(path, data_settings(columns={"v": {"min": 0}}))
    assert result.offending_rows == 0
    assert not rows_path(path).exists()
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("limit", [0, 1, 3, 100])
def test_examples_are_the_first_offending_rows(tmp_path, limit):
    values = [1.0, -1.0, 2.0, -2.0, -3.0, 3.0, -4.0, -5.0, 4.0, -6.0]
    path = _one_column(tmp_path, "t.parquet", values)
    result = run(path, data_settings(examples=limit, columns={"v": {"min": 0}}))
    low = check(result, "min", "v")
    offending = [i for i, v in enumerate(values) if v < 0]
    assert low.failed_rows == len(offending)
    assert low.examples == [{ROW: i, "v": values[i]} for i in offending[:limit]]


def _watch_reads(monkeypatch, path: Path) -> list[str]:
    """Every read of *path* from now on: "collect" (a plan, or plans collected together) or
    "sink"."""
    reads: list[str] = []
    collect, collect_all, sink = pl.LazyFrame.collect, pl.collect_all, pl.LazyFrame.sink_parquet

    def reads_the_file(frame) -> bool:
        return f"SCAN [{path}]" in frame.explain()

    def watching_collect(frame, *args, **kwargs):
        if reads_the_file(frame):
            reads.append("collect")
        return collect(frame, *args, **kwargs)

    def watching_collect_all(queries, **kwargs):
        # Queries collected together share their scan (a CACHE node): one read, said "collect".
        reads.extend(["collect"] * pl.explain_all(queries).count(f"SCAN [{path}]"))
        return collect_all(queries, **kwargs)

    def watching_sink(frame, *args, **kwargs):
        if reads_the_file(frame):
            reads.append("sink")
        return sink(frame, *args, **kwargs)

    monkeypatch.setattr(pl.LazyFrame, "collect", watching_collect)
    monkeypatch.setattr(pl, "collect_all", watching_collect_all)
    monkeypatch.setattr(pl.LazyFrame, "sink_parquet", watching_sink)
    return reads


CHECKS_OF_ONE_PLAN = {
    "v": {"min": -5, "max": 1000, "expression": "v <> 3"},
    "k": {"pattern": "[abz]", "categories": ["a", "b", "z"]},
}


def test_a_clean_file_is_checked_and_profiled_by_one_plan_reading_it_once(tmp_path, monkeypatch):
    path = write(tmp_path, "t.csv", "v,k\n1.0,a\n-1.0,b\n500.0,z\n")
    source = open_source(path)
    reads = _watch_reads(monkeypatch, path)
    result = validate(
        source, data_settings(columns=CHECKS_OF_ONE_PLAN), offending_path=rows_path(path)
    )
    assert result.status == "accepted"
    assert reads == ["collect"]  # every check's count and the profile, in one plan
    assert result.profile["columns"]["v"]["max"] == 500.0
    assert not rows_path(path).exists()


def test_offending_rows_take_a_second_pass_only_when_a_check_counts_some(tmp_path, monkeypatch):
    path = write(tmp_path, "t.csv", "v,k\n1.0,a\n-10.0,b\n500.0,q\n3.0,z\n")
    source = open_source(path)
    reads = _watch_reads(monkeypatch, path)
    result = validate(
        source, data_settings(columns=CHECKS_OF_ONE_PLAN), offending_path=rows_path(path)
    )
    # The counts and the profile, then the rows any check marks streamed to the sink.
    assert reads == ["collect", "sink"]
    assert result.offending_rows == 3
    rows = pl.read_parquet(rows_path(path))
    assert rows[REASON].to_list() == ["min(v)", "categories(k); pattern(k)", "expression(v)"]
    assert result.profile["columns"]["v"]["max"] == 500.0


def test_bounds_are_judged_from_the_min_and_max_and_counted_only_when_beyond(tmp_path, monkeypatch):
    settings = data_settings(columns={"v": {"min": 0, "max": 10}, "n": {"min": 2.5}})
    clean = _one_column(tmp_path, "clean.parquet", [0.0, 5.0, None, math.nan, 10.0])
    plan = build(open_source(clean), settings, None, exact_quantiles=False, arrived_at=ARRIVED)
    # No comparison per row for a bound in the first pass: the column's finite min and max say.
    summed = [plan.flags[int(k[6:])].check for k in first_pass(plan) if k.startswith("flag::")]
    assert [c for c in summed if c in ("min", "max")] == []
    frame = pl.DataFrame({"v": [-1.0, 5.0, 7.0, 11.0, -2.0], "n": [1, 2, 3, 4, 5]})
    path = write_parquet(tmp_path, "t.parquet", frame)
    reads = _watch_reads(monkeypatch, path)
    # Without an offending-rows file, the counts take a pass of their own, only then.
    result = validate(open_source(path), settings, arrived_at=ARRIVED)
    assert reads == ["collect", "collect"]
    assert check(result, "min", "v").failed_rows == 2
    assert check(result, "max", "v").failed_rows == 1
    assert check(result, "min", "n").failed_rows == 2  # 1 and 2
    # With one, they are counted in the rows just written: the file is read twice, as before.
    reads.clear()
    result = validate(
        open_source(path), settings, offending_path=rows_path(path), arrived_at=ARRIVED
    )
    assert reads == ["collect", "sink"]
    assert [
        check(result, c, n).failed_rows for c, n in [("min", "v"), ("max", "v"), ("min", "n")]
    ] == [2, 1, 2]
    assert result.offending_rows == 4


def test_statistics_of_a_column_with_nan_or_infinities_are_of_its_finite_values(
    tmp_path, monkeypatch
):
    """The first pass sums the column as it is (no masked copy per row); a column found to hold
    NaN or infinities gets its statistics, histogram and bounds again over its finite values."""
    reference = {"columns": {"v": {"histogram": {"edges": [0.0, 2.5]}},
                             "w": {"histogram": {"edges": [0.0, 2.5]}}}}  # fmt: skip
    settings = data_settings(columns={"v": {"max": 4, "allow_inf": True, "allow_nan": True},
                                      "w": {"max": 4}})  # fmt: skip
    clean = write_parquet(tmp_path, "clean.parquet", pl.DataFrame({"v": [1.0, 3.0, None],
                                                                   "w": [1.0, 2.0, 3.0]}))  # fmt: skip
    reads = _watch_reads(monkeypatch, clean)
    validate(open_source(clean), settings, reference=reference, arrived_at=ARRIVED)
    assert reads == ["collect"]
    values = [-math.inf, 1.0, math.nan, 3.0, None, math.inf, 5.0]
    path = write_parquet(tmp_path, "t.parquet", pl.DataFrame({"v": values, "w": [1.0] * 7}))
    reads = _watch_reads(monkeypatch, path)
    result = validate(open_source(path), settings, reference=reference,
                      offending_path=rows_path(path), arrived_at=ARRIVED)  # fmt: skip
    assert reads == ["collect", "collect", "sink"]  # then v's finite values, then the 5.0
    v = result.profile["columns"]["v"]
    assert (v["min"], v["max"], v["mean"]) == (1.0, 5.0, 3.0)
    assert v["std"] == pytest.approx(2.0)
    assert (v["nan"], v["inf"], v["nulls"]) == (1, 2, 1)
    assert v["histogram"]["counts"] == [0, 1, 2]  # below 0, [0, 2.5), 2.5 and above
    assert check(result, "max", "v").failed_rows == 1  # 5.0; inf is the finite check's
    assert result.profile["columns"]["w"]["mean"] == 1.0


# -- the profile ------------------------------------------------------------------------------


def _sample(seed: int, n: int, shift: float = 0.0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(10 + shift, 3, n)
    y = rng.exponential(2.0, n)
    y[rng.random(n) < 0.05] = np.nan
    y_list: list[float | None] = y.tolist()
    for i in rng.choice(n, size=n // 20, replace=False):
        y_list[i] = None
    k = rng.choice(["red", "green", "blue", "grey"], size=n, p=[0.5, 0.3, 0.15, 0.05]).tolist()
    return pl.DataFrame(
        {"x": x, "y": y_list, "n": rng.integers(0, 100, n), "k": k},
        schema={"x": pl.Float64, "y": pl.Float64, "n": pl.Int64, "k": pl.String},
    )


def _finite(frame: pl.DataFrame, name: str) -> np.ndarray:
    values = frame[name].drop_nulls().cast(pl.Float64).to_numpy()
    return values[np.isfinite(values)]


def _bin_counts(values: np.ndarray, edges: list[float]) -> list[int]:
    """Counts in [-inf, e0), [e0, e1), ..., [e_last, inf) computed with numpy."""
    index = np.searchsorted(np.asarray(edges), values, side="right")
    return np.bincount(index, minlength=len(edges) + 1).tolist()


def _assert_profile_matches(profile: dict, frame: pl.DataFrame) -> None:
    assert profile["n_rows"] == frame.height
    for name in ("x", "y", "n"):
        column, values = profile["columns"][name], _finite(frame, name)
        assert column["count"] == frame[name].count()
        assert column["nulls"] == frame[name].null_count()
        assert column["min"] == pytest.approx(values.min())
        assert column["max"] == pytest.approx(values.max())
        assert column["mean"] == pytest.approx(values.mean(), rel=1e-12)
        assert column["std"] == pytest.approx(values.std(ddof=1), rel=1e-9)
        histogram = column["histogram"]
        assert sum(histogram["counts"]) == len(values)
        assert histogram["counts"] == _bin_counts(values, histogram["edges"])
    y = profile["columns"]["y"]
    assert y["nan"] == frame["y"].is_nan().sum()
    counts = frame["k"].value_counts()
    assert profile["columns"]["k"]["frequencies"] == dict(counts.iter_rows())
    assert profile["columns"]["k"]["other"] == 0


def test_the_reference_profile_agrees_with_numpy_and_has_exact_quantiles(tmp_path):
    frame = _sample(1, 5000)
    result = reference_profile(
        open_source(write_parquet(tmp_path, "ref.parquet", frame)), DataSettings()
    )
    assert result.status == "accepted"
    profile = result.profile
    _assert_profile_matches(profile, frame)
    for name in ("x", "y", "n"):
        values = _finite(frame, name)
        column = profile["columns"][name]
        expected = {str(q): float(np.quantile(values, q, method="linear")) for q in QUANTILES}
        assert column["quantiles"] == pytest.approx(expected, rel=1e-12)
        # 20 bins of about equal reference frequency (fewer for the integer column).
        if name != "n":
            assert len(column["histogram"]["edges"]) == 19
            assert max(column["histogram"]["counts"]) <= 0.06 * len(values)
    assert list(profile["columns"]["k"]["frequencies"]) == ["red", "green", "blue", "grey"]


def test_a_batch_is_profiled_on_the_reference_bin_edges(tmp_path):
    reference = reference_profile(
        open_source(write_parquet(tmp_path, "ref.parquet", _sample(1, 5000))), DataSettings()
    ).profile
    batch = _sample(2, 3000, shift=1.5)
    result = run(write_parquet(tmp_path, "batch.parquet", batch), reference=reference)
    profile = result.profile
    _assert_profile_matches(profile, batch)
    for name in ("x", "y", "n"):
        column = profile["columns"][name]
        edges = reference["columns"][name]["histogram"]["edges"]
        assert column["histogram"]["edges"] == edges
        # Quantiles come from the histogram: right to within a bin of the exact ones.
        values = _finite(batch, name)
        bounds = [column["min"], *edges, column["max"]]
        for q in QUANTILES:
            exact = float(np.quantile(values, q, method="linear"))
            home = int(np.searchsorted(edges, exact, side="right"))
            low, high = bounds[max(home - 1, 0)], bounds[min(home + 2, len(bounds) - 1)]
            assert low <= column["quantiles"][str(q)] <= high, (name, q, exact)


def test_histograms_count_only_finite_values(tmp_path):
    reference = reference_profile(
        open_source(_one_column(tmp_path, "ref.parquet", [float(i) for i in range(100)])),
        DataSettings(),
    ).profile
    batch = [1.0, NAN, INF, -INF, None, 50.0, 99.0, 200.0]
    result = run(_one_column(tmp_path, "batch.parquet", batch), reference=reference)
    column = result.profile["columns"]["v"]
    assert (column["count"], column["nulls"], column["nan"], column["inf"]) == (7, 1, 1, 2)
    counts = column["histogram"]["counts"]
    assert sum(counts) == 4
    assert (counts[0], counts[10], counts[-1]) == (1, 1, 2)


def test_a_profile_of_declared_types_describes_the_converted_values(tmp_path):
    path = write(tmp_path, "t.csv", "v\n1\n2\nn/a\n4\n")
    result = run(path, data_settings(columns={"v": {"type": "float", "warn": ["type"]}}))
    column = result.profile["columns"]["v"]
    assert (column["kind"], column["count"], column["nulls"], column["mean"]) == (
        "float",
        3,
        1,
        pytest.approx(7 / 3),
    )


def _reference_of(tmp_path: Path, frame: pl.DataFrame) -> dict:
    return reference_profile(
        open_source(write_parquet(tmp_path, "ref.parquet", frame)), DataSettings()
    ).profile


@pytest.mark.parametrize(
    "allowed",
    [
        ["red", "green", "blue"],  # all named by the reference
        ["red", "green", "blue", "pink"],  # one the reference does not name
        ["red", "green", "blue", "c1", "c2", "c3", "c4", "c5", "c6"],  # many it does not name
    ],
)
def test_categories_outside_the_allowed_ones_are_counted_exactly(tmp_path, allowed):
    reference = _reference_of(
        tmp_path, pl.DataFrame({"k": ["red", "green", "blue", "grey", "red", None]})
    )
    batch = ["red", "grey", None, "pink", "blue", "black", "grey", "red", "c5"]
    path = _one_column(tmp_path, "batch.parquet", batch)
    result = run(path, data_settings(columns={"v": {"categories": allowed}}), reference=None)
    expected = [i for i, v in enumerate(batch) if v is not None and v not in allowed]
    # The same batch against the reference (its categories counted in the profile).
    ref_path = _one_column(tmp_path, "batch2.parquet", batch)
    with_ref = run(
        ref_path,
        data_settings(columns={"v": {"categories": allowed}}),
        reference={"columns": {"v": reference["columns"]["k"]}},
    )
    for outcome, where in ((result, path), (with_ref, ref_path)):
        found = check(outcome, "categories", "v")
        assert found.failed_rows == len(expected)
        assert pl.read_parquet(rows_path(where))[ROW].to_list() == expected
    profile = with_ref.profile["columns"]["v"]
    assert profile["frequencies"] == {"red": 2, "green": 0, "blue": 1, "grey": 2}
    assert profile["other"] == 3  # pink, black, c5; the null is not counted
    assert profile["distinct"] == len(set(batch))  # null counted, as polars' n_unique does


def test_distinct_values_of_a_column_within_its_categories_are_counted_not_estimated(
    tmp_path, monkeypatch
):
    closed = _reference_of(tmp_path, pl.DataFrame({"k": ["red", "green", "blue", "red"]}))
    assert closed["columns"]["k"]["other"] == 0
    reference = {"columns": {"v": closed["columns"]["k"]}}
    within = _one_column(tmp_path, "within.parquet", ["red", None, "red", "blue"])
    plan = build(open_source(within), DataSettings(), reference, exact_quantiles=False,
                 arrived_at=ARRIVED)  # fmt: skip
    # The reference's values are all among its categories: no estimate in the first pass.
    assert "p::v::distinct" not in first_pass(plan)
    reads = _watch_reads(monkeypatch, within)
    profile = run(within, reference=reference).profile["columns"]["v"]
    assert reads == ["collect"]
    assert profile["distinct"] == 3  # red, blue and null: green was not seen
    # A value outside them: estimated, in a pass of its own.
    beyond = _one_column(tmp_path, "beyond.parquet", ["red", "pink", "red", "grey", None])
    reads = _watch_reads(monkeypatch, beyond)
    profile = run(beyond, reference=reference).profile["columns"]["v"]
    assert reads == ["collect", "collect"]
    assert (profile["distinct"], profile["other"]) == (4, 2)
    # A reference holding more values than it names: estimated in the first pass.
    words = _reference_of(tmp_path, pl.DataFrame({"k": [f"w{i}" for i in range(400)]}))
    assert words["columns"]["k"]["other"] > 0
    reference = {"columns": {"v": words["columns"]["k"]}}
    plan = build(open_source(within), DataSettings(), reference, exact_quantiles=False,
                 arrived_at=ARRIVED)  # fmt: skip
    assert "p::v::distinct" in first_pass(plan)
    assert run(within, reference=reference).profile["columns"]["v"]["distinct"] == 3


def test_the_same_file_gets_the_same_profile_whatever_the_plans_seed(tmp_path):
    """Distinct values estimated over the seeded hashes changed with each validation's seed."""
    words = [f"w{i % 997}" for i in range(20_000)]
    path = _one_column(tmp_path, "words.parquet", words)
    reference = {"columns": {"v": {"categories": ["w1", "w2"]}}}
    profiles = [run(path, DataSettings(), reference=reference).profile for _ in range(8)]
    assert all(p == profiles[0] for p in profiles)


def test_a_boolean_column_is_profiled_and_checked_as_text(tmp_path):
    frame = pl.DataFrame({"b": [True, False, None, True]})
    reference = _reference_of(tmp_path, frame)
    assert reference["columns"]["b"]["frequencies"] == {"true": 2, "false": 1}
    path = write_parquet(tmp_path, "batch.parquet", pl.DataFrame({"b": [True, True, None]}))
    result = run(
        path,
        data_settings(columns={"b": {"categories": ["false"]}}),
        reference=reference,
    )
    assert check(result, "categories", "b").failed_rows == 2
    assert result.profile["columns"]["b"]["frequencies"] == {"true": 2, "false": 0}


def test_whole_number_columns_are_compared_with_fractional_bounds_and_edges(tmp_path):
    values = [1, 2, 3, 4, 5, None, 2**60]
    reference = {"columns": {"v": {"histogram": {"edges": [1.5, 2.0, 4.5, 1e300]}}}}
    path = _one_column(tmp_path, "t.parquet", values)
    result = run(path, data_settings(columns={"v": {"min": 2.5, "max": 4.5}}), reference=reference)
    assert check(result, "min", "v").failed_rows == 2  # 1 and 2
    assert check(result, "max", "v").failed_rows == 2  # 5 and 2**60
    counts = result.profile["columns"]["v"]["histogram"]["counts"]
    assert counts == [1, 0, 3, 2, 0]  # [-inf, 1.5) [1.5, 2) [2, 4.5) [4.5, 1e300) [1e300, inf)


def test_columns_named_like_the_plans_own_columns_are_left_alone(tmp_path):
    frame = pl.DataFrame(
        {
            "_mldeck_tmp_0": ["a", "b", None],
            "x": [1.0, float("nan"), 3.0],
            "_mldeck_tmp_1": [1, 2, 3],
        }
    )
    path = write_parquet(tmp_path, "t.parquet", frame)
    settings = data_settings(
        columns={"x": {"max": 2.0}, "_mldeck_tmp_0": {"categories": ["a"]}, "_mldeck_tmp_1": {}}
    )
    result = run(path, settings)
    assert check(result, "max", "x").failed_rows == 1
    assert check(result, "finite", "x").failed_rows == 1
    assert check(result, "categories", "_mldeck_tmp_0").failed_rows == 1
    assert result.profile["columns"]["_mldeck_tmp_1"]["max"] == 3.0
    rows = pl.read_parquet(rows_path(path))
    assert rows.columns == [ROW, "_mldeck_tmp_0", "x", "_mldeck_tmp_1", REASON]
    assert rows[REASON].to_list() == ["categories(_mldeck_tmp_0); finite(x)", "max(x)"]


# -- a property: the counts are what polars counts ---------------------------------------------

cell = st.one_of(
    st.none(),
    st.just(math.nan),
    st.just(math.inf),
    st.just(-math.inf),
    st.floats(min_value=-100, max_value=100, allow_nan=False, allow_infinity=False),
)


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    values=st.lists(cell, min_size=1, max_size=30),
    low=st.one_of(st.none(), st.floats(min_value=-100, max_value=0)),
    high=st.one_of(st.none(), st.floats(min_value=0, max_value=100)),
    nullable=st.booleans(),
    as_int=st.booleans(),
)
def test_reported_counts_equal_a_direct_polars_count(values, low, high, nullable, as_int):
    series = pl.Series("v", values, dtype=pl.Float64)
    if as_int:  # whole numbers, no NaN or infinities: an integer column
        series = series.fill_nan(None).replace([math.inf, -math.inf], None).round().cast(pl.Int64)
    expectation: dict[str, Any] = {"nullable": nullable, "allow_nan": True, "allow_inf": True}
    if low is not None:
        expectation["min"] = low
    if high is not None:
        expectation["max"] = high
    with tempfile.TemporaryDirectory() as folder:
        path = write_parquet(Path(folder), "t.parquet", series.to_frame())
        result = run(path, data_settings(columns={"v": expectation}))
        offending = (
            pl.read_parquet(rows_path(path))[ROW].to_list() if rows_path(path).exists() else []
        )
    number = series.cast(pl.Float64)
    real = number.is_not_null() & number.is_finite()  # bounds judge finite numbers only
    expected = {
        "min": None if low is None else int((real & (number < low)).sum()),
        "max": None if high is None else int((real & (number > high)).sum()),
        "nulls": None if nullable else series.null_count(),
    }
    flags = pl.Series([False] * len(series))
    for name, count in expected.items():
        if count is None:
            assert not [c for c in result.checks if c.check == name], name
            continue
        assert check(result, name, "v").failed_rows == count, name
    if low is not None:
        flags = flags | (real & (number < low))
    if high is not None:
        flags = flags | (real & (number > high))
    if not nullable:
        flags = flags | series.is_null()
    assert offending == [i for i, flag in enumerate(flags.to_list()) if flag]
    assert result.offending_rows == len(offending)
    assert result.status == ("rejected" if offending else "accepted")


def test_nothing_is_left_behind_in_the_folder_of_the_offending_rows(tmp_path):
    path = _one_column(tmp_path, "t.parquet", [1.0, -1.0])
    run(path, data_settings(columns={"v": {"min": 0}}))
    assert sorted(os.listdir(tmp_path)) == ["t.parquet", "t.parquet.rows.parquet"]
