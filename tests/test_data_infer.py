"""``mldeck data infer``: a starting set of expectations from a reference file, which the config
accepts and with which the reference itself, and normal batches, pass."""

from __future__ import annotations

import math
import tempfile
import tomllib
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mldeck.config import CONFIG_FILE, parse_settings
from mldeck.data.expectations import DataSettings
from mldeck.data.infer import append_to_config, expectations_toml, guess_columns
from mldeck.data.ingest import ingest_file
from mldeck.data.readers import open_source
from mldeck.data.validate import Validation, reference_profile, validate
from mldeck.errors import MldeckError
from mldeck.workspace import load_workspace

SAMPLES = Path(__file__).resolve().parents[1] / "sample_data"
REFERENCE = SAMPLES / "reference.parquet"
# What `mldeck data infer` profiles with: no expectations yet, ids not judged.
BARE = DataSettings(table={"unique_ids": False})


def profile_of(path: Path) -> Validation:
    result = reference_profile(open_source(path), BARE)
    assert result.read_error is None, result.read_error
    return result


def inferred(frame: pl.DataFrame, folder: Path) -> tuple[Path, str]:
    path = folder / "reference.parquet"
    frame.write_parquet(path)
    return path, expectations_toml(profile_of(path), dataset="d")


def data_settings_of(text: str) -> DataSettings:
    return parse_settings(text, "inferred").data


@pytest.fixture(scope="module")
def sample_toml() -> str:
    return expectations_toml(profile_of(REFERENCE), dataset="churn", reference="reference.parquet")


def test_the_sample_reference_gives_expectations_the_config_accepts(sample_toml):
    data = data_settings_of(sample_toml)
    assert (data.dataset, data.reference) == ("churn", "reference.parquet")
    assert (data.timestamp_column, data.id_column) == ("event_time", "customer_id")
    assert data.table.unique_ids is True
    assert len(data.columns) == 24
    columns = data.columns
    assert columns["event_time"].type == "datetime"
    assert (columns["customer_id"].type, columns["customer_id"].min) == ("int", None)
    assert (columns["tenure_months"].min, columns["tenure_months"].warn) == (0, ["max"])
    assert columns["plan"].categories == ["basic", "premium", "standard"]
    assert columns["support_calls"].type == "int" and not columns["support_calls"].nullable
    # Columns with missing values get an allowance above what the reference shows.
    reference = pl.read_parquet(REFERENCE)
    for name in ("total_charges", "data_usage_gb", "satisfaction_score"):
        share = reference[name].null_count() / reference.height
        assert share < columns[name].max_null_fraction <= 2 * share + 0.006
    # Every upper bound holds for the reference.
    for name, expectation in columns.items():
        if expectation.max is not None:
            assert reference[name].max() <= expectation.max, name


def test_inferred_expectations_accept_normal_batches_and_reject_the_corrupted_one(
    workspace, store, sample_toml
):
    with open(workspace.config_path, "a", encoding="utf-8") as fh:
        fh.write("\n" + sample_toml)
    ws = load_workspace(workspace.root)
    reference = ingest_file(ws, store, REFERENCE, as_reference=True)
    assert reference.status == "accepted", reference.reasons
    for name in ("batch_01_normal.csv", "batch_02_normal.csv"):
        outcome = ingest_file(ws, store, SAMPLES / name)
        assert (outcome.status, outcome.reasons) == ("accepted", []), name
    corrupted = ingest_file(ws, store, SAMPLES / "batch_06_corrupted.csv")
    assert corrupted.status == "rejected"
    reasons = {reason.split(":")[0]: reason for reason in corrupted.reasons}
    assert reasons["min(tenure_months)"].endswith("values below 0")
    assert "values are not int (column read as String)" in reasons["type(support_calls)"]
    assert reasons["categories(plan)"].endswith("values outside the allowed categories")
    assert reasons["categories(device_os)"].endswith("values outside the allowed categories")
    assert "rows share an id with another row" in reasons["unique_ids(customer_id)"]
    assert "nulls(satisfaction_score)" in reasons
    # The corrupted batch's counts are those of the data itself.
    batch = pl.read_csv(SAMPLES / "batch_06_corrupted.csv", infer_schema_length=0)
    negative = batch["tenure_months"].cast(pl.Int64, strict=False) < 0
    assert reasons["min(tenure_months)"] == f"min(tenure_months): {negative.sum()} values below 0"
    legacy = (~batch["plan"].is_in(["basic", "premium", "standard"])).sum()
    assert reasons["categories(plan)"].startswith(f"categories(plan): {legacy} values")
    shared = batch["customer_id"].is_duplicated().sum()
    assert reasons["unique_ids(customer_id)"].startswith(f"unique_ids(customer_id): {shared} rows")


def test_cli_infer_prints_the_expectations_of_the_sample_reference(workspace, cli):
    printed = cli("data", "infer", str(REFERENCE), "--dataset", "churn", cwd=workspace.root)
    assert printed.returncode == 0, printed.stderr
    data = data_settings_of(printed.stdout)
    assert (data.dataset, data.reference) == ("churn", str(REFERENCE))
    assert (data.timestamp_column, data.id_column) == ("event_time", "customer_id")
    assert data.columns["plan"].categories == ["basic", "premium", "standard"]


def test_cli_infer_names_a_file_of_another_type(workspace, cli, tmp_path):
    """An .xlsx was "a header but no rows"."""
    sheet = tmp_path / "junk.xlsx"
    sheet.write_bytes(b"PK\x03\x04 a spreadsheet")
    done = cli("data", "infer", str(sheet), cwd=workspace.root)
    assert done.returncode == 2 and "not a data file mldeck reads ('.xlsx'" in done.stderr


def test_a_pipe_is_named_as_one_not_as_an_empty_file(tmp_path):
    """`mldeck data infer <(cat batch.csv)` said 'empty file (0 bytes)': a pipe has no size."""
    import os
    import threading

    from mldeck.data.readers import ReadError, open_source

    pipe = tmp_path / "p.csv"
    os.mkfifo(pipe)

    def write() -> None:
        try:
            fd = os.open(pipe, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # nobody opened it for reading (the fix does not)
            return
        with os.fdopen(fd, "w") as fh:
            fh.write("a,b\n1,2\n")

    writer = threading.Timer(0.2, write)
    writer.start()
    try:
        with pytest.raises(ReadError, match="not a regular file \\(a pipe or a device\\)"):
            open_source(pipe)
    finally:
        writer.join()


def test_cli_infer_writes_the_expectations_once(workspace, cli):
    reference = workspace.root / "data" / "ref.parquet"
    pl.DataFrame({"order_id": [1, 2, 3], "amount": [1.5, 2.0, None]}).write_parquet(reference)
    config = workspace.root / CONFIG_FILE
    before = config.read_text()
    written = cli("data", "infer", "data/ref.parquet", "--write", cwd=workspace.root)
    assert written.returncode == 0, written.stderr
    assert f"Wrote the expectations for 2 columns to {config}" in written.stdout
    assert config.read_text().startswith(before)
    data = load_workspace(workspace.root).settings.data
    assert (data.reference, data.id_column) == ("data/ref.parquet", "order_id")
    assert data.columns["amount"].max_null_fraction == pytest.approx(0.672)

    after = config.read_text()
    again = cli("data", "infer", "data/ref.parquet", "--write", cwd=workspace.root)
    assert again.returncode != 0
    assert "Traceback" not in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    assert "already has a [data] section" in again.stderr
    assert config.read_text() == after


def test_a_csv_float_column_spelling_nan_in_lower_case_is_inferred_as_float(workspace, cli):
    """polars reads 'nan' (not 'NaN') in a CSV as text: the column was inferred as a string with
    the numbers for categories. It is a float column, and the file passes what was inferred."""
    reference = workspace.root / "data" / "ref.csv"
    reference.write_text("id,x,label\n1,1.5,a\n2,inf,b\n3,2.5,a\n4,nan,b\n5,,a\n")
    written = cli("data", "infer", "data/ref.csv", "--write", cwd=workspace.root)
    assert written.returncode == 0, written.stderr
    ws = load_workspace(workspace.root)
    x = ws.settings.data.columns["x"]
    assert (x.type, x.allow_nan, x.allow_inf, x.categories) == ("float", True, True, None)
    assert ws.settings.data.columns["label"].categories == ["a", "b"]
    ingested = cli("data", "ingest", "data/ref.csv", "--json", cwd=workspace.root)
    assert ingested.returncode == 0, ingested.stdout + ingested.stderr


def test_append_to_config_leaves_a_config_with_data_untouched(tmp_path):
    config = tmp_path / CONFIG_FILE
    config.write_text('[data]\ndataset = "mine"\n')
    with pytest.raises(MldeckError, match=r"already has a \[data\] section"):
        append_to_config(config, "[data]\n")
    assert config.read_text() == '[data]\ndataset = "mine"\n'


def test_append_to_config_never_writes_a_config_that_does_not_load(tmp_path):
    config = tmp_path / CONFIG_FILE
    config.write_text('[project]\nname = "p"\n')
    with pytest.raises(MldeckError, match="unknown key 'bogus'"):
        append_to_config(config, "[data]\nbogus = 1\n")
    assert config.read_text() == '[project]\nname = "p"\n'
    assert [p.name for p in tmp_path.iterdir()] == [CONFIG_FILE]


# -- the guesses ------------------------------------------------------------------------------


def _guess(frame: pl.DataFrame, tmp_path: Path) -> tuple[str | None, str | None]:
    path = tmp_path / "f.parquet"
    frame.write_parquet(path)
    return guess_columns(profile_of(path))


def test_an_id_column_is_guessed_from_its_name_and_uniqueness(tmp_path):
    n = 50
    frame = pl.DataFrame(
        {
            "paid": [i % 2 for i in range(n)],  # ends with "id" but repeats: not an id
            "order_id": [1000 + i for i in range(n)],
            "at": pl.datetime_range(
                pl.datetime(2026, 1, 1), pl.datetime(2026, 1, 1, 0, n - 1), "1m", eager=True
            ),
        }
    )
    assert _guess(frame, tmp_path) == ("at", "order_id")
    assert _guess(frame.drop("order_id"), tmp_path) == ("at", None)


def test_an_id_column_with_repeats_or_gaps_is_not_guessed(tmp_path):
    repeated = pl.DataFrame({"user_id": [1, 2, 2, 3, 4, 5, 6, 7]})
    assert _guess(repeated, tmp_path) == (None, None)
    with_nulls = pl.DataFrame({"user_id": [1, 2, None, 4]})
    assert _guess(with_nulls, tmp_path) == (None, None)
    text = pl.DataFrame({"user_id": [f"u{i}" for i in range(40)]})
    assert _guess(text, tmp_path) == (None, "user_id")
    text_repeats = pl.DataFrame({"user_id": [f"u{i % 10}" for i in range(40)]})
    assert _guess(text_repeats, tmp_path) == (None, None)


def test_floats_seen_as_nan_or_infinite_are_allowed(tmp_path):
    frame = pl.DataFrame({"x": [1.0, math.nan, 2.0], "y": [1.0, math.inf, 3.0], "z": [1.0, 2, 3]})
    path, text = inferred(frame, tmp_path)
    columns = data_settings_of(text).columns
    assert (columns["x"].allow_nan, columns["x"].allow_inf) == (True, False)
    assert (columns["y"].allow_nan, columns["y"].allow_inf) == (False, True)
    assert (columns["z"].allow_nan, columns["z"].allow_inf) == (False, False)
    assert validate(open_source(path), data_settings_of(text)).status == "accepted"


@pytest.mark.parametrize("largest", [1e-7, 3.3333333, 0.30000000000000004, 123456789.123])
def test_an_upper_bound_is_never_below_what_was_seen(tmp_path, largest):
    path, text = inferred(pl.DataFrame({"x": [0.0, largest]}), tmp_path)
    expectation = data_settings_of(text).columns["x"]
    assert expectation.max >= 2 * largest
    assert expectation.max <= 2 * largest * (1 + 1e-5)
    assert validate(open_source(path), data_settings_of(text)).status == "accepted"


def test_awkward_names_and_categories_survive_the_toml(tmp_path):
    odd = ["with space", "é✓数据", "dot.ted", 'quo"te', "back\\slash", "tab\there", "del\x7f"]
    frame = pl.DataFrame({name: ["a", "b", name, "a"] for name in odd})
    path, text = inferred(frame, tmp_path)
    data = data_settings_of(text)
    assert list(data.columns) == odd
    for name in odd:
        assert data.columns[name].categories == sorted({"a", "b", name})
    assert validate(open_source(path), data).status == "accepted"


def test_a_string_column_with_many_values_gets_no_categories(tmp_path):
    frame = pl.DataFrame({"word": [f"w{i}" for i in range(200)], "few": ["x", "y"] * 100})
    _, text = inferred(frame, tmp_path)
    columns = data_settings_of(text).columns
    assert columns["word"].categories is None
    assert columns["few"].categories == ["x", "y"]


def test_an_all_null_column_is_allowed_to_stay_null(tmp_path):
    path, text = inferred(pl.DataFrame({"x": [1, 2, 3], "gone": [None, None, None]}), tmp_path)
    columns = data_settings_of(text).columns
    assert (columns["gone"].type, columns["gone"].max_null_fraction) == (None, 1.0)
    assert validate(open_source(path), data_settings_of(text)).status == "accepted"


# -- a property: a reference passes the expectations inferred from it ------------------------

NAMES = ["a", "b c", "é", "x.y", "Total", "n-1"]
KINDS = ["int", "float", "string", "bool", "date"]


@st.composite
def frames(draw: st.DrawFn) -> pl.DataFrame:
    n = draw(st.integers(min_value=1, max_value=25))
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True))
    columns = {}
    for name in names:
        kind = draw(st.sampled_from(KINDS))
        value = {
            "int": st.integers(min_value=-(10**6), max_value=10**6),
            "float": st.one_of(
                st.floats(min_value=-1e9, max_value=1e9, allow_nan=False),
                st.just(math.nan),
                st.just(math.inf),
            ),
            "string": st.text(min_size=0, max_size=6),
            "bool": st.booleans(),
            "date": st.dates(),
        }[kind]
        values = draw(st.lists(st.one_of(st.none(), value), min_size=n, max_size=n))
        dtype = {
            "int": pl.Int64,
            "float": pl.Float64,
            "string": pl.String,
            "bool": pl.Boolean,
            "date": pl.Date,
        }[kind]
        columns[name] = pl.Series(name, values, dtype=dtype)
    return pl.DataFrame(list(columns.values()))


@settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(frame=frames())
def test_a_reference_passes_the_expectations_inferred_from_it(frame):
    with tempfile.TemporaryDirectory() as folder:
        path, text = inferred(frame, Path(folder))
        tomllib.loads(text)
        data = data_settings_of(text)
        assert list(data.columns) == frame.columns
        result = validate(open_source(path), data)
    assert result.status == "accepted", (result.reasons(), text)


def test_cli_infer_reads_a_semicolon_reference_and_writes_its_separator(workspace, cli):
    """A ';'-separated reference: `--separator` reads it and the [data] section it writes
    names the separator, so the reference and the batches are read with it."""
    reference = workspace.root / "ref.csv"
    reference.write_text("id;amount;plan\n1;2.5;basic\n2;3.5;pro\n3;1.0;basic\n")
    refused = cli("data", "infer", "ref.csv", cwd=workspace.root)
    assert refused.returncode != 0 and "looks ';'-separated" in refused.stderr
    for wrong, said in (("ab", "not 'ab'"), ("\\t", "(a tab: --separator $'\\t')")):
        bad = cli("data", "infer", "ref.csv", "--separator", wrong, cwd=workspace.root)
        assert bad.returncode == 2 and "Traceback" not in bad.stderr
        assert bad.stderr.strip().splitlines() == [
            f"mldeck: error: a CSV separator is one character, {said}"
            if wrong == "ab"
            else f"mldeck: error: a CSV separator is one character, not '\\\\t' {said}"
        ]
    written = cli("data", "infer", "ref.csv", "--separator", ";", "--write", cwd=workspace.root)
    assert written.returncode == 0, written.stderr
    data = load_workspace(workspace.root).settings.data
    assert data.csv_separator == ";" and set(data.columns) == {"id", "amount", "plan"}
    ingested = cli("data", "ingest", "ref.csv", cwd=workspace.root)
    assert ingested.returncode == 0 and "ACCEPTED" in ingested.stdout, ingested.stderr
