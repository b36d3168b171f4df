"""Data-validation benchmark: mldeck against the polars floor, pandera and Evidently.

Generates N rows x 20 columns (12 float, 4 int, 4 categorical, 1-4 % nulls per column) as Parquet,
once per N, into a cache folder, and measures wall time and peak memory of:

    floor     polars reading the file and computing one aggregate per column (streaming engine)
    mldeck    mldeck.data.validate: expectations on every column + the full profile (offending rows
              would take a second pass; the benchmark's data has none)
    pandera   pandera's polars backend, the same checks, on the collected frame (reading included)
    evidently Evidently's DataSummaryPreset on the pandas frame (reading and conversion included)

Every measurement runs in a fresh subprocess (``--run CONTENDER --file F``), so the peak resident
memory (``VmHWM``) belongs to that contender alone. Wall time is taken inside the child around
the work only; interpreter start-up and imports are reported apart. Best of ``--repeat`` runs.

    python bench/data_validation.py --rows 1000000 5000000 10000000 --repeat 3
    python bench/data_validation.py --rows 1000000 5000000 --skip-evidently
    python bench/data_validation.py --breakdown --rows 1000000 10000000   # which parts cost what
    python bench/data_validation.py --bounded --rows 1000000 5000000 10000000 20000000  # memory
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import Measure, measure_rounds, run_child, spawn
from harness import ratio as _ratio
from harness import verdict as _verdict

GENERATOR_VERSION = 1
SEED = 20_251_125
CHUNK_ROWS = 250_000  # rows generated at a time, and the Parquet row-group size
REFERENCE_ROWS = 200_000
NULL_FRACTIONS = (0.01, 0.02, 0.03, 0.04)  # column j gets NULL_FRACTIONS[j % 4]
MAX_NULL_FRACTION = 0.06  # the expectation: every column is allowed up to 6 % nulls
MAIN_CONTENDERS = ("floor", "mldeck", "pandera", "evidently")

# Targets (per N): mldeck/floor time, mldeck/pandera time, evidently/mldeck time, memory.
MAX_TIME_VS_FLOOR = 2.0
MAX_TIME_VS_PANDERA = 1.0
MIN_EVIDENTLY_FACTOR = 10.0
MAX_MEMORY_VS_FLOOR = 1.2
MAX_MEMORY_GROWTH = 1.25  # mldeck's peak at the largest N over its peak at the smallest N


# -- the data ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # float | int | string
    draw: str  # how values are drawn
    params: tuple[float, ...] = ()
    categories: tuple[str, ...] = ()
    null_fraction: float = 0.0
    low: float | None = None  # the expectation's bounds (numbers)
    high: float | None = None


def _columns() -> list[Column]:
    specs: list[Column] = []
    for i in range(12):
        if i % 2 == 0:
            loc, scale = 10.0 * i, 1.0 + i
            specs.append(Column(f"f{i:02d}", "float", "normal", (loc, scale),
                                low=loc - 12 * scale, high=loc + 12 * scale))  # fmt: skip
        else:
            mu, sigma = i / 4, 0.5
            specs.append(Column(f"f{i:02d}", "float", "lognormal", (mu, sigma),
                                low=0.0, high=round(math.exp(mu + 12 * sigma), 3)))  # fmt: skip
    specs += [
        Column("i00", "int", "uniform", (18, 91), low=18, high=90),
        Column("i01", "int", "poisson", (3,), low=0, high=1_000),
        Column("i02", "int", "uniform", (0, 100_000), low=0, high=99_999),
        Column("i03", "int", "geometric", (0.2,), low=1, high=10_000),
    ]
    regions = ("north", "south", "east", "west", "central", "islands", "abroad")
    specs += [
        Column("c00", "string", "zipf", categories=("basic", "standard", "premium")),
        Column("c01", "string", "zipf", categories=regions),
        Column("c02", "string", "zipf", categories=tuple(f"channel_{k:02d}" for k in range(12))),
        Column("c03", "string", "zipf", categories=tuple(f"segment_{k:02d}" for k in range(30))),
    ]
    return [
        Column(**{**c.__dict__, "null_fraction": NULL_FRACTIONS[j % len(NULL_FRACTIONS)]})
        for j, c in enumerate(specs)
    ]


COLUMNS = _columns()


def _chunk(rows: int, seed: int, index: int) -> Any:
    """One chunk of rows as a polars DataFrame; deterministic for (seed, index)."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng([seed, index])
    series = []
    for col in COLUMNS:
        if col.draw == "normal":
            values = pl.Series(col.name, rng.normal(col.params[0], col.params[1], rows))
        elif col.draw == "lognormal":
            values = pl.Series(col.name, rng.lognormal(col.params[0], col.params[1], rows))
        elif col.draw == "uniform":
            lo, hi = int(col.params[0]), int(col.params[1])
            values = pl.Series(col.name, rng.integers(lo, hi, rows, dtype=np.int64))
        elif col.draw == "poisson":
            values = pl.Series(col.name, rng.poisson(col.params[0], rows).astype(np.int64))
        elif col.draw == "geometric":
            values = pl.Series(col.name, rng.geometric(col.params[0], rows).astype(np.int64))
        else:  # zipf-like frequencies over the categories
            weights = 1 / np.arange(1, len(col.categories) + 1)
            picks = rng.choice(len(col.categories), size=rows, p=weights / weights.sum())
            values = pl.Series(col.name, col.categories).gather(picks.astype(np.uint32))
        nulls = np.flatnonzero(rng.random(rows) < col.null_fraction)
        series.append(values.scatter(nulls, None))
    return pl.DataFrame(series)


def generate(path: Path, rows: int, seed: int) -> None:
    """Write *rows* rows to *path* chunk by chunk (one row group each): memory stays small."""
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    writer = None
    try:
        for index, start in enumerate(range(0, rows, CHUNK_ROWS)):
            table = _chunk(min(CHUNK_ROWS, rows - start), seed, index).to_arrow()
            if writer is None:
                writer = pq.ParquetWriter(partial, table.schema, compression="zstd")
            writer.write_table(table, row_group_size=CHUNK_ROWS)
    finally:
        if writer is not None:
            writer.close()
    os.replace(partial, path)


def data_file(data_dir: Path, rows: int, seed: int = SEED) -> Path:
    """The cached file of *rows* rows, generated first if missing (in a child process, so that this
    one, whose children are measured, stays small)."""
    path = data_dir / f"v{GENERATOR_VERSION}-s{seed}-{rows}.parquet"
    if not path.exists():
        started = time.perf_counter()
        print(f"generating {path.name} ({rows:,} rows) ...", flush=True)
        command = [sys.executable, __file__, "--generate", str(path), "--rows", str(rows),
                   "--seed", str(seed)]  # fmt: skip
        subprocess.run(command, check=True)
        size = path.stat().st_size / 2**20
        print(f"  {size:.0f} MB in {time.perf_counter() - started:.1f} s", flush=True)
    return path


# -- expectations (the same checks for mldeck and pandera) ------------------------------------


def mldeck_settings() -> Any:
    from mldeck.data.expectations import ColumnExpectation, DataSettings

    columns = {}
    for col in COLUMNS:
        if col.kind == "string":
            columns[col.name] = ColumnExpectation(
                type="string", max_null_fraction=MAX_NULL_FRACTION, categories=list(col.categories)
            )
        else:
            columns[col.name] = ColumnExpectation(
                type=col.kind, max_null_fraction=MAX_NULL_FRACTION, min=col.low, max=col.high
            )
    return DataSettings(dataset="bench", columns=columns)


def pandera_schema() -> Any:
    import pandera.polars as pa
    import polars as pl

    dtypes = {"float": pl.Float64, "int": pl.Int64, "string": pl.String}
    columns = {}
    for col in COLUMNS:
        if col.kind == "string":
            checks = [pa.Check.isin(list(col.categories))]
        else:
            checks = [pa.Check.in_range(col.low, col.high)]
        columns[col.name] = pa.Column(dtypes[col.kind], checks=checks, nullable=True)
    return pa.DataFrameSchema(columns, strict=True)


# -- the contenders (run in a child process) ---------------------------------------------------


def prepare_floor(args: argparse.Namespace) -> Any:
    import polars as pl

    engine = args.variant or "streaming"

    def work() -> dict[str, Any]:
        frame = pl.scan_parquet(args.file)
        schema = frame.collect_schema()
        exprs = [
            pl.col(name).mean() if dtype.is_numeric() else pl.col(name).max()
            for name, dtype in schema.items()
        ]
        out = frame.select(exprs).collect(engine=engine)
        return {"engine": engine, "columns": out.width}

    return work


def prepare_mldeck(args: argparse.Namespace) -> Any:
    from mldeck.data.readers import open_source
    from mldeck.data.validate import validate

    settings = mldeck_settings()
    reference = json.loads(Path(args.ref_profile).read_text())
    offending = Path(args.tmp) / "bad.parquet"

    def work() -> dict[str, Any]:
        result = validate(
            open_source(Path(args.file)), settings, reference=reference, offending_path=offending
        )
        failed = [f"{c.label}: {c.detail}" for c in result.failed]
        if result.status != "accepted":
            raise SystemExit(f"mldeck did not accept the benchmark data: {failed[:5]}")
        return {"status": result.status, "rows": result.n_rows, "checks": len(result.checks)}

    return work


def prepare_reference(args: argparse.Namespace) -> Any:
    """Not a contender: profiles the reference file once and writes the profile as JSON."""
    from mldeck.data.readers import open_source
    from mldeck.data.validate import reference_profile

    settings = mldeck_settings()

    def work() -> dict[str, Any]:
        result = reference_profile(open_source(Path(args.file)), settings)
        if result.status != "accepted":
            raise SystemExit(f"the reference was not accepted: {result.reasons()[:5]}")
        Path(args.out).write_text(json.dumps(result.profile))
        return {"status": result.status}

    return work


def prepare_pandera(args: argparse.Namespace) -> Any:
    import polars as pl

    schema = pandera_schema()
    if args.variant == "lazy":
        # pandera validates a LazyFrame at schema level only unless told to check the data too.
        from pandera.config import ValidationDepth, config_context

        def work_lazy() -> dict[str, Any]:
            with config_context(validation_depth=ValidationDepth.SCHEMA_AND_DATA):
                schema.validate(pl.scan_parquet(args.file), lazy=True)
            return {"input": "LazyFrame, SCHEMA_AND_DATA"}

        return work_lazy

    def work() -> dict[str, Any]:
        frame = pl.read_parquet(args.file)
        schema.validate(frame, lazy=True)
        return {"input": "DataFrame (read_parquet)", "rows": frame.height}

    return work


def prepare_evidently(args: argparse.Namespace) -> Any:
    import polars as pl
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataSummaryPreset

    definition = DataDefinition(
        numerical_columns=[c.name for c in COLUMNS if c.kind != "string"],
        categorical_columns=[c.name for c in COLUMNS if c.kind == "string"],
    )

    def work() -> dict[str, Any]:
        started = time.perf_counter()
        frame = pl.read_parquet(args.file).to_pandas()
        loaded = time.perf_counter() - started
        dataset = Dataset.from_pandas(frame, data_definition=definition)
        snapshot = Report([DataSummaryPreset()]).run(dataset, None)
        summary = snapshot.dict()
        return {"load_and_convert_s": round(loaded, 3), "metrics": len(summary.get("metrics", []))}

    return work


def prepare_part(args: argparse.Namespace) -> Any:
    """One piece of mldeck's validation plan, for ``--breakdown``."""
    from mldeck.data.readers import open_source

    return PARTS[args.variant](args, open_source(Path(args.file)))


PREPARE = {
    "floor": prepare_floor,
    "mldeck": prepare_mldeck,
    "reference": prepare_reference,
    "pandera": prepare_pandera,
    "evidently": prepare_evidently,
    "part": prepare_part,
}


# -- breakdown of mldeck's plan ----------------------------------------------------------------
#
# Parts of the plan mldeck.data.validate.build() makes, each collected alone in a fresh process,
# and the formulations measured against them, to find what costs time or memory.


def _settings(*, unique: bool = False) -> Any:
    """The benchmark's expectations; with *unique*, ``i02`` must also be unique (a warning: it is
    not unique, 100,000 distinct values)."""
    settings = mldeck_settings()
    if unique:
        columns = dict(settings.columns)
        columns["i02"] = columns["i02"].model_copy(update={"unique": True, "warn": ["unique"]})
        settings = settings.model_copy(update={"columns": columns})
    return settings


def _reference(args: argparse.Namespace) -> dict[str, Any]:
    return json.loads(Path(args.ref_profile).read_text())


def _plan(source: Any, args: argparse.Namespace, **options: bool) -> Any:
    from mldeck.data.validate import build

    settings = _settings(unique=options.get("unique", False))
    reference = None if options.get("no_reference") else _reference(args)
    exact = options.get("exact", False)
    return build(source, settings, reference, exact_quantiles=exact, arrived_at=datetime.now(UTC))


def _stat(key: str) -> str:
    """What a plan key computes: 'flag', 'nulls', 'rows', or a profile statistic ('below' for
    the histogram's cumulative counts, 'cat' for a category's count, 'q' for quantiles, ...)."""
    parts = key.split("::")
    if parts[0] == "p":
        stat = parts[2]
        for prefix in ("below", "cat", "allowed", "q"):
            if stat.startswith(prefix) and stat[len(prefix) :][:1].isdigit():
                return prefix
        return stat
    return parts[0]


def _all_aggregates(plan: Any) -> dict[str, Any]:
    """What validate() collects in its first pass."""
    from mldeck.data.validate import first_pass

    return first_pass(plan)


def _aggregate_part(select: Any, **options: bool) -> Any:
    """Collect the first pass's aggregates for which ``select(key)`` holds, in one select over
    the plan's derived columns."""

    def prepare(args: argparse.Namespace, source: Any) -> Any:
        plan = _plan(source, args, **options)
        chosen = {k: e for k, e in _all_aggregates(plan).items() if select(k)}
        if not chosen:
            raise SystemExit("no expression selected")
        query = plan.frame(source.frame).select(**chosen)

        def work() -> dict[str, Any]:
            query.collect(engine="streaming")
            return {"expressions": len(chosen)}

        return work

    return prepare


def _of_stat(*stats: str) -> Any:
    return lambda key: _stat(key) in stats


def _validate_part(**kwargs: Any) -> Any:
    """validate() itself, with some of its options changed."""

    def prepare(args: argparse.Namespace, source: Any) -> Any:
        from mldeck.data.validate import validate

        options = dict(kwargs)
        settings = _settings(unique=options.pop("unique", False))
        reference = None if options.pop("no_reference", False) else _reference(args)
        if options.pop("sink", True):
            options["offending_path"] = Path(args.tmp) / "bad.parquet"

        def work() -> dict[str, Any]:
            result = validate(source, settings, reference=reference, **options)
            return {"status": result.status, "offending_rows": result.offending_rows}

        return work

    return prepare


def _second_pass_part(args: argparse.Namespace, source: Any) -> Any:
    """The offending-rows pass alone, as validate() runs it when a check counts rows, with every
    flag of the plan (on the benchmark's clean data it writes no row: this is its floor)."""
    from mldeck.data.validate import _write_offending

    plan = _plan(source, args)

    def work() -> dict[str, Any]:
        written = _write_offending(source, plan, plan.flags, Path(args.tmp) / "bad.parquet",
                                   "streaming")  # fmt: skip
        return {"flags": len(plan.flags), "rows": written}

    return work


def _text_category_counts(args: argparse.Namespace, source: Any) -> Any:
    """The reference's categories counted by comparing the text with each one (what the plan
    did before it compared hashes)."""
    import polars as pl

    reference = _reference(args)["columns"]
    exprs = [
        (pl.col(c.name) == category).sum().alias(f"{c.name}={i}")
        for c in COLUMNS
        if c.kind == "string"
        for i, category in enumerate(reference[c.name]["frequencies"])
    ]
    query = source.frame.select(exprs)

    def work() -> dict[str, Any]:
        query.collect(engine="streaming")
        return {"expressions": len(exprs)}

    return work


def _two_branch_plan(args: argparse.Namespace, source: Any) -> Any:
    """The first pass and the offending-rows sink as two branches of one ``collect_all`` over
    the same scan, the flags computed once as columns (how validate() worked before it took a
    second pass only for files with offending rows): one read, but polars' multiplexer buffers
    morsels between the branches."""
    import polars as pl

    from mldeck.data.validate import REASON, ROW

    plan = _plan(source, args)
    aggregates = _all_aggregates(plan)
    flags = {f"_flag{i}": f.expr for i, f in enumerate(plan.flags)}
    base = plan.frame(source.frame.with_row_index(ROW)).with_columns(**flags)
    aggregates.update({f"flag::{i}": pl.col(name).sum() for i, name in enumerate(flags)})
    reason = pl.concat_str(
        [pl.when(pl.col(name)).then(pl.lit(f"{f.check}({f.column})"))
         for name, f in zip(flags, plan.flags, strict=True)],
        separator="; ", ignore_nulls=True,
    )  # fmt: skip
    sink = (
        base.filter(pl.any_horizontal(list(flags)))
        .select(ROW, *source.columns, reason.alias(REASON))
        .sink_parquet(Path(args.tmp) / "bad.parquet", lazy=True)
    )

    def work() -> dict[str, Any]:
        pl.collect_all([base.select(**aggregates), sink], engine="streaming")
        return {"queries": 2}

    return work


def _group_by_categories(args: argparse.Namespace, source: Any) -> Any:
    """Category frequencies without a reference (what ``top`` computes with ``value_counts``), as
    one streaming ``group_by().len()`` per string column, all in one ``collect_all``."""
    import polars as pl

    strings = [c.name for c in COLUMNS if c.kind == "string"]

    def work() -> dict[str, Any]:
        queries = [
            source.frame.select(pl.col(n).cast(pl.String)).drop_nulls().group_by(n).len()
            for n in strings
        ]
        counts = pl.collect_all(queries, engine="streaming")
        return {"groups": sum(c.height for c in counts)}

    return work


PARTS: dict[str, Any] = {
    # validate() as (b) runs it, and with one option changed
    "validate": _validate_part(),
    "validate-no-reference": _validate_part(no_reference=True),
    "validate-in-memory": _validate_part(engine="in-memory"),
    "validate-exact-quantiles": _validate_part(exact_quantiles=True),
    "validate-unique-i02": _validate_part(unique=True),
    # pieces of its first pass, each alone (over the derived columns they need)
    "first-pass": _aggregate_part(lambda key: True),
    "counts-and-nulls": _aggregate_part(_of_stat("rows", "count", "nulls", "nan", "finite")),
    "min-max-mean-std": _aggregate_part(_of_stat("min", "max", "mean", "std")),
    "histogram-bins": _aggregate_part(_of_stat("below")),
    "category-counts": _aggregate_part(_of_stat("cat", "allowed")),
    "distinct": _aggregate_part(_of_stat("distinct")),
    "flags": _aggregate_part(_of_stat("flag")),
    "top-categories": _aggregate_part(_of_stat("top"), no_reference=True),
    "exact-quantiles": _aggregate_part(_of_stat("q"), exact=True),
    # the second pass alone (offending rows)
    "second-pass": _second_pass_part,
    # other formulations, measured against the plan's
    "category-counts-as-text": _text_category_counts,
    "top-categories-group-by": _group_by_categories,
    "one-read-two-branches": _two_branch_plan,
}


# -- the parent: generating, spawning, tabulating ----------------------------------------------


def with_file(jobs: dict[str, dict[str, Any]], file: Path) -> dict[str, dict[str, Any]]:
    """Every job run on *file*."""
    return {name: {**options, "file": file} for name, options in jobs.items()}


def reference_profile_file(data_dir: Path, tmp: Path) -> Path:
    """The reference (REFERENCE_ROWS rows, another seed, same distributions), profiled once."""
    ref_file = data_file(data_dir, REFERENCE_ROWS, seed=SEED + 1)
    out = tmp / "reference_profile.json"
    run = spawn(__file__, run="reference", file=ref_file, timeout=600, out=out, tmp=tmp)
    if "error" in run:
        raise SystemExit(f"profiling the reference failed: {run['error']}")
    return out


def _cell(m: Measure | None, *, cpu: bool = False) -> str:
    if m is None:
        return "-"
    if not m.ok:
        return m.note[:24]
    if cpu:
        return f"{m.seconds:.2f} ({m.cpu_s:.2f}) / {m.peak_mb:.0f}"
    return f"{m.seconds:.2f} / {m.peak_mb:.0f}"


def table(results: dict[int, dict[str, Measure]]) -> str:
    header = (
        f"{'N':>11}  {'floor s / MB':>14}  {'mldeck s / MB':>14}  {'pandera s / MB':>14}  "
        f"{'evidently s / MB':>24}  {'mldeck/floor t':>14}  {'mldeck/pandera t':>16}  "
        f"{'evidently/mldeck t':>18}  {'mldeck/floor MB':>15}"
    )
    lines = [header, "-" * len(header)]
    for rows, by in results.items():
        floor, mine = by.get("floor"), by.get("mldeck")
        pandera, evidently = by.get("pandera"), by.get("evidently")
        lines.append(
            f"{rows:>11,}  {_cell(floor):>14}  {_cell(mine):>14}  {_cell(pandera):>14}  "
            f"{_cell(evidently):>24}  "
            f"{_verdict(_ratio(mine, floor, 'seconds'), MAX_TIME_VS_FLOOR):>14}  "
            f"{_verdict(_ratio(mine, pandera, 'seconds'), MAX_TIME_VS_PANDERA):>16}  "
            f"{_verdict(_ratio(evidently, mine, 'seconds'), MIN_EVIDENTLY_FACTOR, at_least=True):>18}  "
            f"{_verdict(_ratio(mine, floor, 'peak_mb'), MAX_MEMORY_VS_FLOOR):>15}"
        )
    return "\n".join(lines)


def cpu_table(results: dict[int, dict[str, Measure]]) -> str:
    """The time ratios in CPU seconds: less disturbed by other work on the machine than wall time
    (but Evidently uses one core where polars uses all, so its CPU ratio is the smaller one)."""
    lines = [f"{'N':>11}  {'mldeck/floor CPU':>16}  {'mldeck/pandera CPU':>18}  "
             f"{'evidently/mldeck CPU':>20}"]  # fmt: skip
    for rows, by in results.items():
        mine = by.get("mldeck")
        ratios = [
            _ratio(mine, by.get("floor"), "cpu_s"),
            _ratio(mine, by.get("pandera"), "cpu_s"),
            _ratio(by.get("evidently"), mine, "cpu_s"),
        ]
        shown = ["n/a" if r is None else f"{r:.2f}" for r in ratios]
        lines.append(f"{rows:>11,}  {shown[0]:>16}  {shown[1]:>18}  {shown[2]:>20}")
    return "\n".join(lines)


def detail_table(results: dict[int, dict[str, Measure]]) -> str:
    lines = [
        f"{'N':>11}  {'contender':<10}  {'wall s':>7}  {'CPU s':>7}  {'peak MB':>8}  "
        f"{'before work MB':>14}  {'work MB':>8}  {'start-up s':>10}"
    ]
    for rows, by in results.items():
        for name, m in by.items():
            if m.ok:
                lines.append(
                    f"{rows:>11,}  {name:<10}  {m.seconds:>7.2f}  {m.cpu_s:>7.2f}  "
                    f"{m.peak_mb:>8.0f}  {m.rss_before_mb:>14.0f}  "
                    f"{m.peak_mb - m.rss_before_mb:>8.0f}  {m.startup_s or 0:>10.2f}"
                )
    mine = {
        rows: by["mldeck"] for rows, by in results.items() if "mldeck" in by and by["mldeck"].ok
    }
    if len(mine) >= 2:
        lines.append(growth_line(mine))
    return "\n".join(lines)


def growth_line(peaks: dict[int, Measure]) -> str:
    """Whether mldeck's peak memory stays flat as N grows. The reader's pipeline fills up over
    the first few row groups (a file of 4 row groups never fills it): bounded means flat once it
    is full, so the largest N is compared with the smallest N at least a quarter of it."""
    largest = max(peaks)
    base = min((r for r in peaks if r * 4 >= largest and r < largest), default=min(peaks))
    growth = peaks[largest].peak_mb / peaks[base].peak_mb
    return (
        f"mldeck peak at {largest:,} rows / at {base:,} rows (rows x{largest / base:.0f}): "
        f"{_verdict(growth, MAX_MEMORY_GROWTH)} (bounded if <= {MAX_MEMORY_GROWTH})"
    )


def environment() -> dict[str, Any]:
    """Versions, the source's commit and the machine, printed with every run."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in ("mldeck", "polars", "pandera", "evidently", "pandas", "numpy"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "src/mldeck/data"],
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", ""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": (commit or "unknown") + (" (src/mldeck/data modified)" if dirty else ""),
        "data_source_sha256": _data_source_hash(root / "src" / "mldeck" / "data"),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "versions": versions,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def _data_source_hash(folder: Path) -> str:
    """A hash of mldeck's data code (what the benchmark measures), short."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def check_source_unchanged(env: dict[str, Any]) -> None:
    """Say so when mldeck's data code changed while the benchmark ran (the figures then mix two
    versions of it); commits to other parts of the repository do not matter here."""
    now = environment()["data_source_sha256"]
    if now != env["data_source_sha256"]:
        print(
            f"WARNING: src/mldeck/data changed during the run ({env['data_source_sha256']} -> {now})"
        )


def run_benchmark(args: argparse.Namespace, data_dir: Path, tmp: Path) -> None:
    env = environment()
    print(json.dumps(env), flush=True)
    ref_profile = reference_profile_file(data_dir, tmp)
    results: dict[int, dict[str, Measure]] = {}
    for rows in sorted(args.rows):
        file = data_file(data_dir, rows)
        jobs: dict[str, dict[str, Any]] = {}
        skipped: dict[str, Measure] = {}
        for contender in MAIN_CONTENDERS:
            if contender not in args.contenders:
                skipped[contender] = Measure(contender, rows, note="not run (--contenders)")
            elif contender == "evidently" and args.skip_evidently:
                skipped[contender] = Measure(contender, rows, note="skipped (--skip-evidently)")
            elif contender == "evidently" and rows > args.skip_evidently_above:
                skipped[contender] = Measure(contender, rows, note="skipped (too slow)")
            else:
                jobs[contender] = {"run": contender, "ref_profile": ref_profile, "tmp": tmp}
        limits = {"evidently": args.evidently_repeat or args.repeat}
        by = measure_rounds(
            __file__, with_file(jobs, file), rows, args.repeat, args.timeout, limits
        )
        results[rows] = {name: by.get(name) or skipped[name] for name in MAIN_CONTENDERS}
    print()
    print(table(results))
    print()
    print(detail_table(results))
    print()
    print(cpu_table(results))
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    check_source_unchanged(env)
    skipped = {m.note for by in results.values() for m in by.values() if not m.ok}
    for note in sorted(skipped):
        print(f"note: {note}")
    if any("too slow" in note for note in skipped):
        print(
            f"note: Evidently is skipped above {args.skip_evidently_above:,} rows "
            "(--skip-evidently-above): minutes per run and several GB; nothing is extrapolated."
        )
    if args.json:
        dump = {
            "environment": env,
            "repeat": args.repeat,
            "results": {
                str(rows): {name: m.__dict__ for name, m in by.items()}
                for rows, by in results.items()
            },
        }
        Path(args.json).write_text(json.dumps(dump, indent=1))


def in_memory_mb(file: Path, rows: int) -> float:
    """The size of the file's data as one polars frame (from its first row group)."""
    import polars as pl

    sample = pl.scan_parquet(file).head(CHUNK_ROWS).collect()
    return sample.estimated_size() * rows / max(sample.height, 1) / 2**20


def run_bounded(args: argparse.Namespace, data_dir: Path, tmp: Path) -> None:
    """Peak memory of the floor and of mldeck (streaming engine) as the file grows: bounded when
    mldeck's peak at the largest N is about its peak at the smallest, far below the data's size."""
    env = environment()
    print(json.dumps(env), flush=True)
    ref_profile = reference_profile_file(data_dir, tmp)
    results: dict[int, dict[str, Measure]] = {}
    sizes: dict[int, tuple[float, float]] = {}
    for rows in sorted(args.rows):
        file = data_file(data_dir, rows)
        sizes[rows] = (file.stat().st_size / 2**20, in_memory_mb(file, rows))
        jobs = {name: {"run": name, "ref_profile": ref_profile, "tmp": tmp}
                for name in ("floor", "mldeck")}  # fmt: skip
        results[rows] = measure_rounds(
            __file__, with_file(jobs, file), rows, args.repeat, args.timeout
        )
    print()
    print(f"peak resident memory (MB), worst of {args.repeat} runs; streaming engine")
    header = (
        f"{'N':>11}  {'file MB':>8}  {'in memory MB':>12}  {'floor MB':>8}  {'mldeck MB':>9}  "
        f"{'mldeck work MB':>14}  {'mldeck/floor':>12}  {'mldeck/in memory':>16}"
    )
    lines = [header, "-" * len(header)]
    for rows, by in results.items():
        floor, mine = by["floor"], by["mldeck"]
        disk, frame = sizes[rows]
        if not (floor.ok and mine.ok):
            lines.append(f"{rows:>11,}  {floor.note or mine.note}")
            continue
        lines.append(
            f"{rows:>11,}  {disk:>8.0f}  {frame:>12.0f}  {floor.peak_mb:>8.0f}  "
            f"{mine.peak_mb:>9.0f}  {mine.peak_mb - mine.rss_before_mb:>14.0f}  "
            f"{_verdict(mine.peak_mb / floor.peak_mb, MAX_MEMORY_VS_FLOOR):>12}  "
            f"{mine.peak_mb / frame:>16.2f}"
        )
    print("\n".join(lines))
    done = {rows: by for rows, by in results.items() if by["mldeck"].ok and by["floor"].ok}
    if len(done) >= 2:
        largest = max(done)
        for name in ("mldeck", "floor"):
            first, last = done[min(done)][name].peak_mb, done[largest][name].peak_mb
            print(f"{name} peak at {largest:,} rows / at {min(done):,} rows: {last / first:.2f}")
        print(growth_line({rows: by["mldeck"] for rows, by in done.items()}))
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    check_source_unchanged(env)
    if args.json:
        dump = {
            "environment": env,
            "repeat": args.repeat,
            "sizes_mb": {str(r): {"file": d, "in_memory": m} for r, (d, m) in sizes.items()},
            "results": {
                str(rows): {name: m.__dict__ for name, m in by.items()}
                for rows, by in results.items()
            },
        }
        Path(args.json).write_text(json.dumps(dump, indent=1))


def run_breakdown(args: argparse.Namespace, data_dir: Path, tmp: Path) -> None:
    env = environment()
    print(json.dumps(env), flush=True)
    ref_profile = reference_profile_file(data_dir, tmp)
    parts = args.parts or list(PARTS)
    rows_list = sorted(args.rows)
    results: dict[str, dict[int, Measure]] = {part: {} for part in parts}
    floors: dict[int, Measure] = {}
    for rows in rows_list:
        file = data_file(data_dir, rows)
        jobs: dict[str, dict[str, Any]] = {"floor": {"run": "floor"}}
        for part in parts:
            jobs[part] = {"run": "part", "variant": part, "ref_profile": ref_profile, "tmp": tmp}
        by = measure_rounds(__file__, with_file(jobs, file), rows, args.repeat, args.timeout)
        floors[rows] = by["floor"]
        for part in parts:
            results[part][rows] = by[part]
    print()
    print("wall s (CPU s) / peak MB, best of", args.repeat)
    header = f"{'part':<28}" + "".join(f"{f'{rows:,} rows':>26}" for rows in rows_list)
    print(header)
    print("-" * len(header))
    cells = "".join(f"{_cell(floors[r], cpu=True):>26}" for r in rows_list)
    print(f"{'floor (streaming)':<28}" + cells)
    for part in parts:
        cells = "".join(f"{_cell(results[part][r], cpu=True):>26}" for r in rows_list)
        print(f"{part:<28}" + cells)
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    check_source_unchanged(env)
    if args.json:
        dump = {
            "environment": env,
            "repeat": args.repeat,
            "floor": {str(r): m.__dict__ for r, m in floors.items()},
            "parts": {
                part: {str(r): m.__dict__ for r, m in by.items()} for part, by in results.items()
            },
        }
        Path(args.json).write_text(json.dumps(dump, indent=1))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender; best time")
    parser.add_argument("--skip-evidently", action="store_true")
    parser.add_argument(
        "--contenders", nargs="+", choices=MAIN_CONTENDERS, default=list(MAIN_CONTENDERS)
    )
    parser.add_argument(
        "--evidently-repeat", type=int, default=None, metavar="N",
        help="runs of Evidently (default: --repeat); it is minutes per run at 5M rows",
    )  # fmt: skip
    parser.add_argument("--skip-evidently-above", type=int, default=1_000_000, metavar="N")
    parser.add_argument("--data-dir", type=Path, default=None, help="where generated files live")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per child run")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--breakdown", action="store_true", help="time the parts of mldeck's plan")
    parser.add_argument(
        "--bounded", action="store_true",
        help="peak memory of the floor and mldeck as N grows (e.g. --rows 1000000 ... 20000000)",
    )  # fmt: skip
    parser.add_argument("--parts", nargs="+", choices=sorted(PARTS), default=None)
    # child modes
    parser.add_argument("--generate", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=SEED, help=argparse.SUPPRESS)
    parser.add_argument("--run", choices=sorted(PREPARE), help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--ref-profile", help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--spawned-at", type=float, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.generate:
        generate(args.generate, args.rows[0], args.seed)
        return
    if args.run:
        run_child(PREPARE[args.run], args)
        return
    default_dir = Path(tempfile.gettempdir()) / "mldeck-bench-data"
    data_dir = args.data_dir or Path(os.environ.get("MLDECK_BENCH_DATA", default_dir))
    with tempfile.TemporaryDirectory(prefix="mldeck-bench-") as tmp:
        if args.breakdown:
            run_breakdown(args, data_dir, Path(tmp))
        elif args.bounded:
            run_bounded(args, data_dir, Path(tmp))
        else:
            run_benchmark(args, data_dir, Path(tmp))


if __name__ == "__main__":
    main()
