"""Drift benchmark: mldeck's per-batch drift check against the polars floor and Evidently.

Generates a reference and a current batch of N rows x 20 columns each (12 float, 4 int,
4 categorical, 1-4 % nulls per column; four columns of the batch shifted) as Parquet, once per N,
into a cache folder, and measures wall time and peak memory of:

    floor     polars reading the current batch and computing one aggregate per column
    mldeck    what a check does per batch: ``drift.summarize_batch`` on the current batch with the
              reference's stored baseline (loaded from its JSON, not timed), ``compare_column``
              for every column and ``multivariate``; the reference's rows are never read
    evidently Evidently's DataDriftPreset on the two pandas frames (reading and conversion of
              both files included: it has no stored reference)
    script    a plain polars + scipy script: both files read, normalised Wasserstein distance
              per number, Jensen-Shannon distance per category

and, apart, the one-off cost of ``drift.build_baseline`` on the reference (stored once per
reference version, then reused by every check).

Every measurement runs in a fresh subprocess (``--run CONTENDER``), so the peak resident memory
(``VmHWM``) belongs to that contender alone. Wall time is taken inside the child around the work
only; imports and set-up are not timed. Best of ``--repeat`` runs, the contenders taking turns
round by round so that other work on the machine disturbs them alike. Ratios are between figures
of the same run.

    python bench/drift.py                                  # 1M vs 1M rows, best of 3
    python bench/drift.py --rows 100000 1000000 --evidently-repeat 1
    python bench/drift.py --rows 5000000 --skip-evidently
    python bench/drift.py --evidently-python /path/to/venv/bin/python   # see --help

Evidently 0.7 does not import with pandas 3; ``--evidently-python`` runs its contender with
another interpreter (a virtual environment with ``--system-site-packages`` and ``pandas<3``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import Measure, measure_rounds, run_child
from harness import ratio as _ratio
from harness import verdict as _verdict

GENERATOR_VERSION = 1
SEED = 20_251_204
CHUNK_ROWS = 250_000  # rows generated at a time, and the Parquet row-group size
NULL_FRACTIONS = (0.01, 0.02, 0.03, 0.04)  # column j gets NULL_FRACTIONS[j % 4]
CONTENDERS = ("floor", "mldeck", "evidently", "script")

# Targets (per N): mldeck/floor time, evidently/mldeck time.
MAX_TIME_VS_FLOOR = 2.0
MIN_EVIDENTLY_FACTOR = 50.0


# -- the data ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # float | int | string
    draw: str  # normal | lognormal | uniform | poisson | geometric | zipf
    params: tuple[float, ...] = ()  # the reference's parameters
    shifted: tuple[float, ...] = ()  # the current batch's, when the column drifts
    categories: tuple[str, ...] = ()
    null_fraction: float = 0.0


def _columns() -> list[Column]:
    specs: list[Column] = []
    for i in range(12):
        if i % 2 == 0:
            loc, scale = 10.0 * i, 1.0 + i
            shifted = (loc + 0.3 * scale, scale) if i == 0 else ()  # mean + 0.3 sd
            specs.append(Column(f"f{i:02d}", "float", "normal", (loc, scale), shifted))
        else:
            mu, sigma = i / 4, 0.5
            shifted = (mu, 0.7) if i == 5 else ()  # wider
            specs.append(Column(f"f{i:02d}", "float", "lognormal", (mu, sigma), shifted))
    specs += [
        Column("i00", "int", "uniform", (18, 91), (26, 99)),  # + 8 years: 0.38 sd
        Column("i01", "int", "poisson", (3,)),
        Column("i02", "int", "uniform", (0, 100_000)),
        Column("i03", "int", "geometric", (0.2,)),
    ]
    regions = ("north", "south", "east", "west", "central", "islands", "abroad")
    specs += [
        Column("c00", "string", "zipf", (1.0,), categories=("basic", "standard", "premium")),
        Column("c01", "string", "zipf", (1.0,), (-1.0,), categories=regions),  # reversed
        Column("c02", "string", "zipf", (1.0,), categories=tuple(f"ch_{k:02d}" for k in range(12))),
        Column(
            "c03", "string", "zipf", (1.0,), categories=tuple(f"seg_{k:02d}" for k in range(30))
        ),
    ]
    return [
        Column(**{**c.__dict__, "null_fraction": NULL_FRACTIONS[j % len(NULL_FRACTIONS)]})
        for j, c in enumerate(specs)
    ]


COLUMNS = _columns()
SHIFTED = tuple(c.name for c in COLUMNS if c.shifted)
KINDS = {c.name: "categorical" if c.kind == "string" else "numeric" for c in COLUMNS}


def _chunk(rows: int, seed: int, index: int, side: str) -> Any:
    """One chunk of rows as a polars DataFrame; deterministic for (seed, index, side)."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng([seed, index, 0 if side == "reference" else 1])
    series = []
    for col in COLUMNS:
        p = col.shifted if side == "current" and col.shifted else col.params
        if col.draw == "normal":
            values = pl.Series(col.name, rng.normal(p[0], p[1], rows))
        elif col.draw == "lognormal":
            values = pl.Series(col.name, rng.lognormal(p[0], p[1], rows))
        elif col.draw == "uniform":
            values = pl.Series(col.name, rng.integers(int(p[0]), int(p[1]), rows, dtype=np.int64))
        elif col.draw == "poisson":
            values = pl.Series(col.name, rng.poisson(p[0], rows).astype(np.int64))
        elif col.draw == "geometric":
            values = pl.Series(col.name, rng.geometric(p[0], rows).astype(np.int64))
        else:  # zipf-like frequencies over the categories (exponent -1: reversed order)
            weights = np.arange(1, len(col.categories) + 1, dtype=float) ** -p[0]
            picks = rng.choice(len(col.categories), size=rows, p=weights / weights.sum())
            values = pl.Series(col.name, col.categories).gather(picks.astype(np.uint32))
        nulls = np.flatnonzero(rng.random(rows) < col.null_fraction)
        series.append(values.scatter(nulls, None))
    return pl.DataFrame(series)


def generate(path: Path, rows: int, side: str) -> None:
    """Write *rows* rows of one side to *path* chunk by chunk (one row group each)."""
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    writer = None
    try:
        for index, start in enumerate(range(0, rows, CHUNK_ROWS)):
            table = _chunk(min(CHUNK_ROWS, rows - start), SEED, index, side).to_arrow()
            if writer is None:
                writer = pq.ParquetWriter(partial, table.schema, compression="zstd")
            writer.write_table(table, row_group_size=CHUNK_ROWS)
    finally:
        if writer is not None:
            writer.close()
    os.replace(partial, path)


def data_file(data_dir: Path, rows: int, side: str) -> Path:
    """The cached file of one side, generated first (in a child process) if missing."""
    path = data_dir / f"drift-v{GENERATOR_VERSION}-s{SEED}-{side}-{rows}.parquet"
    if not path.exists():
        started = time.perf_counter()
        print(f"generating {path.name} ({rows:,} rows) ...", flush=True)
        command = [sys.executable, __file__, "--generate", str(path), "--side", side,
                   "--rows", str(rows)]  # fmt: skip
        subprocess.run(command, check=True)
        size = path.stat().st_size / 2**20
        print(f"  {size:.0f} MB in {time.perf_counter() - started:.1f} s", flush=True)
    return path


# -- the contenders (run in a child process) ---------------------------------------------------


def prepare_floor(args: argparse.Namespace) -> Any:
    import polars as pl

    engine = args.variant or "streaming"

    def work() -> dict[str, Any]:
        frame = pl.scan_parquet(args.current)
        schema = frame.collect_schema()
        exprs = [
            pl.col(name).mean() if dtype.is_numeric() else pl.col(name).max()
            for name, dtype in schema.items()
        ]
        out = frame.select(exprs).collect(engine=engine)
        return {"engine": engine, "columns": out.width}

    return work


def prepare_baseline(args: argparse.Namespace) -> Any:
    """Not a contender: the one-off ``build_baseline`` of the reference, written as JSON."""
    import polars as pl

    from mldeck.monitor import drift

    def work() -> dict[str, Any]:
        baseline = drift.build_baseline(pl.scan_parquet(args.reference), KINDS)
        data = drift.baseline_bytes(baseline)
        Path(args.out).write_bytes(data)
        model = baseline.get("multivariate") or {}
        return {"bytes": len(data), "pca_components": len(model.get("components", []))}

    return work


def prepare_mldeck(args: argparse.Namespace) -> Any:
    import polars as pl

    from mldeck.monitor import drift
    from mldeck.monitor.settings import MonitorSettings

    baseline = drift.baseline_from_bytes(Path(args.baseline).read_bytes())
    settings = MonitorSettings()
    # compare_column imports scipy on first use: an import, paid once per process, not per batch.
    import scipy.spatial.distance
    import scipy.stats  # noqa: F401

    def work() -> dict[str, Any]:
        summary = drift.summarize_batch(pl.scan_parquet(args.current), baseline)
        results = [
            drift.compare_column(name, spec, summary["columns"][name], baseline["n_rows"], settings)
            for name, spec in baseline["columns"].items()
            if name in summary["columns"]
        ]
        multivariate = drift.multivariate(baseline, summary, settings)
        return {
            "drifted": sorted(r.feature for r in results if r.drifted),
            "scores": {r.feature: round(r.statistic or 0.0, 4) for r in results},
            "multivariate": bool(multivariate and multivariate.drifted),
        }

    return work


def prepare_evidently(args: argparse.Namespace) -> Any:
    import polars as pl
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(
        numerical_columns=[c.name for c in COLUMNS if c.kind != "string"],
        categorical_columns=[c.name for c in COLUMNS if c.kind == "string"],
    )

    def work() -> dict[str, Any]:
        started = time.perf_counter()
        reference = pl.read_parquet(args.reference).to_pandas()
        current = pl.read_parquet(args.current).to_pandas()
        loaded = time.perf_counter() - started
        snapshot = Report([DataDriftPreset()]).run(
            Dataset.from_pandas(current, data_definition=definition),
            Dataset.from_pandas(reference, data_definition=definition),
        )
        summary = snapshot.dict()
        drifted, scores = [], {}
        for metric in summary.get("metrics", []):
            config = metric.get("config", {})
            column, value = config.get("column"), metric.get("value")
            if column and isinstance(value, int | float):
                scores[column] = round(float(value), 4)
                if value >= (config.get("threshold") or 0.1):
                    drifted.append(column)
        return {"load_and_convert_s": round(loaded, 3), "drifted": sorted(drifted),
                "scores": scores}  # fmt: skip

    return work


def prepare_script(args: argparse.Namespace) -> Any:
    """A plain script: read both files, a distance per column with scipy."""
    import numpy as np
    import polars as pl
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import wasserstein_distance

    def work() -> dict[str, Any]:
        reference = pl.read_parquet(args.reference)
        current = pl.read_parquet(args.current)
        scores = {}
        for col in COLUMNS:
            if col.kind == "string":
                r = reference[col.name].drop_nulls().value_counts()
                c = current[col.name].drop_nulls().value_counts()
                both = r.join(c, on=col.name, how="full", coalesce=True).fill_null(0)
                p = both["count"].to_numpy().astype(float)
                q = both["count_right"].to_numpy().astype(float)
                scores[col.name] = float(jensenshannon(p / p.sum(), q / q.sum()))
            else:
                r = reference[col.name].drop_nulls().cast(pl.Float64).to_numpy()
                c = current[col.name].drop_nulls().cast(pl.Float64).to_numpy()
                scores[col.name] = float(wasserstein_distance(r, c) / np.std(r))
        drifted = sorted(name for name, score in scores.items() if score >= 0.1)
        return {"drifted": drifted, "scores": {k: round(v, 4) for k, v in scores.items()}}

    return work


PREPARE = {
    "floor": prepare_floor,
    "baseline": prepare_baseline,
    "mldeck": prepare_mldeck,
    "evidently": prepare_evidently,
    "script": prepare_script,
}


# -- the parent: generating, spawning, tabulating ----------------------------------------------


def _cell(m: Measure | None) -> str:
    if m is None:
        return "-"
    if not m.ok:
        return m.note[:22]
    return f"{m.seconds:.2f} / {m.peak_mb:.0f}"


def table(results: dict[int, dict[str, Measure]]) -> str:
    header = (
        f"{'N':>11}  {'floor s / MB':>13}  {'mldeck s / MB':>13}  {'evidently s / MB':>22}  "
        f"{'script s / MB':>13}  {'mldeck/floor t (<= 2)':>21}  "
        f"{'evidently/mldeck t (>= 50)':>26}"
    )
    lines = [header, "-" * len(header)]
    for rows, by in results.items():
        floor, mine, evidently = by.get("floor"), by.get("mldeck"), by.get("evidently")
        lines.append(
            f"{rows:>11,}  {_cell(floor):>13}  {_cell(mine):>13}  {_cell(evidently):>22}  "
            f"{_cell(by.get('script')):>13}  "
            f"{_verdict(_ratio(mine, floor), MAX_TIME_VS_FLOOR):>21}  "
            f"{_verdict(_ratio(evidently, mine), MIN_EVIDENTLY_FACTOR, at_least=True):>26}"
        )
    return "\n".join(lines)


def detail_table(results: dict[int, dict[str, Measure]], baselines: dict[int, Measure]) -> str:
    """Wall and CPU time per contender, and which columns each found drifted."""
    lines = [f"{'N':>11}  {'contender':<18}  {'wall s':>7}  {'CPU s':>7}  {'peak MB':>8}  drifted"]
    for rows, by in results.items():
        rows_of = {**by, "baseline (one-off)": baselines.get(rows)}
        for name, m in rows_of.items():
            if m is not None and m.ok:
                drifted = m.extra.get("drifted")
                found = "" if drifted is None else ", ".join(drifted)
                if found and set(drifted) == set(SHIFTED):
                    found += " (= the shifted columns)"
                if m.extra.get("multivariate"):
                    found += " + multivariate"
                lines.append(
                    f"{rows:>11,}  {name:<18}  {m.seconds:>7.2f}  {m.cpu_s:>7.2f}  "
                    f"{m.peak_mb:>8.0f}  {found}"
                )
    lines.append(f"shifted in the current batch: {', '.join(SHIFTED)}")
    return "\n".join(lines)


def cpu_table(results: dict[int, dict[str, Measure]]) -> str:
    """The time ratios in CPU seconds (less disturbed by other work on the machine; Evidently
    uses one core where polars uses both, so its CPU ratio is the smaller one)."""
    lines = [f"{'N':>11}  {'mldeck/floor CPU':>16}  {'evidently/mldeck CPU':>20}"]
    for rows, by in results.items():
        mine = by.get("mldeck")
        ratios = [
            _ratio(mine, by.get("floor"), "cpu_s"),
            _ratio(by.get("evidently"), mine, "cpu_s"),
        ]
        shown = ["n/a" if r is None else f"{r:.2f}" for r in ratios]
        lines.append(f"{rows:>11,}  {shown[0]:>16}  {shown[1]:>20}")
    return "\n".join(lines)


def _evidently_python(args: argparse.Namespace) -> str | None:
    """The interpreter for Evidently's child: --evidently-python, else this one if Evidently
    imports in it. None (with a note) when neither works."""
    candidates = [args.evidently_python] if args.evidently_python else [sys.executable]
    for python in candidates:
        probe = subprocess.run(
            [python, "-c", "import evidently.presets"], capture_output=True, text=True, timeout=120
        )
        if probe.returncode == 0:
            return python
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        print(f"note: evidently does not import with {python}: {last}", flush=True)
    return None


def environment(evidently_python: str | None) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in ("mldeck", "polars", "numpy", "scipy", "pandas"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    if evidently_python:
        probe = subprocess.run(
            [evidently_python, "-c",
             "import evidently, pandas; print(evidently.__version__, pandas.__version__)"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        ev, pd = [*probe.stdout.split(), "?", "?"][:2]
        versions["evidently"] = f"{ev} (pandas {pd})"
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "src/mldeck/monitor"],
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", ""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": (commit or "unknown") + (" (src/mldeck/monitor modified)" if dirty else ""),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "versions": versions,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def run_benchmark(args: argparse.Namespace, data_dir: Path, tmp: Path) -> None:
    wants_evidently = "evidently" in args.contenders and not args.skip_evidently
    evidently_python = _evidently_python(args) if wants_evidently else None
    env = environment(evidently_python)
    print(json.dumps(env), flush=True)
    results: dict[int, dict[str, Measure]] = {}
    baselines: dict[int, Measure] = {}
    for rows in sorted(args.rows):
        reference = data_file(data_dir, rows, "reference")
        current = data_file(data_dir, rows, "current")
        files = {"reference": reference, "current": current}
        baseline = tmp / f"baseline-{rows}.json"
        # The one-off cost: the first run writes the baseline every mldeck run reads.
        base_runs = measure_rounds(
            __file__, {"baseline (one-off)": {"run": "baseline", "out": baseline, **files}},
            rows, 1, args.timeout,
        )  # fmt: skip
        baselines[rows] = base_runs["baseline (one-off)"]
        if not baselines[rows].ok:
            raise SystemExit(f"building the baseline failed: {baselines[rows].note}")
        jobs: dict[str, dict[str, Any]] = {}
        skipped: dict[str, Measure] = {}
        for name in CONTENDERS:
            if name not in args.contenders:
                skipped[name] = Measure(name, rows, note="not run")
            elif name == "evidently" and args.skip_evidently:
                skipped[name] = Measure(name, rows, note="skipped (--skip-evidently)")
            elif name == "evidently" and rows > args.skip_evidently_above:
                skipped[name] = Measure(name, rows, note="skipped (too slow)")
            elif name == "evidently" and evidently_python is None:
                skipped[name] = Measure(name, rows, note="evidently does not import")
            else:
                python = evidently_python if name == "evidently" else None
                jobs[name] = {"run": name, "baseline": baseline, "python": python, **files}
                if name == "floor" and args.floor_engine:
                    jobs[name]["variant"] = args.floor_engine
        limits = {"evidently": args.evidently_repeat or args.repeat}
        by = measure_rounds(__file__, jobs, rows, args.repeat, args.timeout, limits)
        results[rows] = {name: by.get(name) or skipped[name] for name in CONTENDERS}
    print()
    print(table(results))
    print()
    print(detail_table(results, baselines))
    print()
    print(cpu_table(results))
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if environment(None)["commit"] != env["commit"]:
        print("WARNING: the source changed during the run")
    if args.json:
        dump = {
            "environment": env,
            "repeat": args.repeat,
            "baselines": {str(r): m.__dict__ for r, m in baselines.items()},
            "results": {
                str(rows): {name: m.__dict__ for name, m in by.items()}
                for rows, by in results.items()
            },
        }
        Path(args.json).write_text(json.dumps(dump, indent=1))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000],
                        help="rows on each side (e.g. 100000 1000000 5000000)")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender; best time")
    parser.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    parser.add_argument("--skip-evidently", action="store_true")
    parser.add_argument("--skip-evidently-above", type=int, default=1_000_000, metavar="N",
                        help="Evidently takes about a minute at 1M rows and 10 GB at 5M")  # fmt: skip
    parser.add_argument("--evidently-repeat", type=int, default=None, metavar="N",
                        help="runs of Evidently (default: --repeat)")  # fmt: skip
    parser.add_argument("--evidently-python", default=None, metavar="PYTHON",
                        help="interpreter for Evidently's runs (one where it imports)")  # fmt: skip
    parser.add_argument("--floor-engine", choices=("streaming", "in-memory"), default=None,
                        help="polars engine of the floor (default: streaming)")  # fmt: skip
    parser.add_argument("--data-dir", type=Path, default=None, help="where generated files live")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per child run")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    # child modes
    parser.add_argument("--generate", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--side", choices=("reference", "current"), help=argparse.SUPPRESS)
    parser.add_argument("--run", choices=sorted(PREPARE), help=argparse.SUPPRESS)
    parser.add_argument("--spawned-at", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--reference", help=argparse.SUPPRESS)
    parser.add_argument("--current", help=argparse.SUPPRESS)
    parser.add_argument("--baseline", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.generate:
        generate(args.generate, args.rows[0], args.side)
        return
    if args.run:
        run_child(PREPARE[args.run], args)
        return
    default_dir = Path(tempfile.gettempdir()) / "mldeck-bench-data"
    data_dir = args.data_dir or Path(os.environ.get("MLDECK_BENCH_DATA", default_dir))
    with tempfile.TemporaryDirectory(prefix="mldeck-bench-drift-") as tmp:
        run_benchmark(args, data_dir, Path(tmp))


if __name__ == "__main__":
    main()
