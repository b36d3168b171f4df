"""Validation and profiling in one lazy polars plan.

Every check is a per-row flag (or a table-level aggregate). The first pass is one ``select`` over
the file with the streaming engine: the columns as their declared types, their finite numbers and
the hashes of their text are computed once per row, then every check's count and the whole profile
are aggregates of them (no filter, no Python loop over rows or values). Memory stays bounded
whatever the file's size. Only when a check counts offending rows does a second streaming pass
write them (with a reason column) to a Parquet sink: a clean file is read once.

A *profile* (JSON) is what drift compares against: per column counts, nulls, min / max / mean /
std, quantiles, a histogram on the reference's bin edges, category frequencies.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from mldeck.data.expectations import ColumnExpectation, DataSettings
from mldeck.data.readers import Source, short_records
from mldeck.formatting import plural

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
EDGE_QUANTILES = tuple(i / 20 for i in range(1, 20))  # 20 bins of equal reference frequency
TOP_CATEGORIES = 50
# Allowed categories the reference does not name that are counted one by one (more: a lookup).
MAX_EXTRA_COUNTED = 4
REASON = "_mldeck_reason"
ROW = "_mldeck_row"
TYPES: dict[str, pl.DataType] = {
    "int": pl.Int64(),
    "float": pl.Float64(),
    "string": pl.String(),
    "bool": pl.Boolean(),
    "datetime": pl.Datetime("us"),
    "date": pl.Date(),
}


@dataclass
class CheckResult:
    check: str
    column: str | None
    severity: str
    status: str  # pass | warn | fail
    failed_rows: int
    detail: str
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.check}({self.column})" if self.column else self.check

    def as_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "column": self.column,
            "severity": self.severity,
            "status": self.status,
            "failed_rows": self.failed_rows,
            "detail": self.detail,
            "examples": self.examples,
        }


@dataclass
class Validation:
    """The outcome of validating one file."""

    status: str  # accepted | warned | rejected
    n_rows: int | None
    n_cols: int | None
    schema: dict[str, str]
    checks: list[CheckResult]
    profile: dict[str, Any]
    read_error: str | None = None
    offending_rows: int = 0
    seconds: float = 0.0

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status != "pass"]

    def report(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "n_rows": self.n_rows,
            "n_cols": self.n_cols,
            "read_error": self.read_error,
            "offending_rows": self.offending_rows,
            "seconds": round(self.seconds, 4),
            "checks": [c.as_dict() for c in self.checks],
        }

    def reasons(self) -> list[str]:
        """One line per problem (failed and warned checks, or the read error)."""
        return reasons_from_report(self.report())


def reasons_from_report(report: dict[str, Any]) -> list[str]:
    """One line per problem of a stored report (failed and warned checks, or the read error)."""
    if report.get("read_error"):
        return [report["read_error"]]
    lines = []
    checks = report.get("checks", [])
    # Beside failures, a warning says so: it is not why the batch was rejected.
    mixed = any(c["status"] == "fail" for c in checks)
    for check in checks:
        if check["status"] != "pass":
            label = f"{check['check']}({check['column']})" if check["column"] else check["check"]
            mark = "warning, " if mixed and check["status"] == "warn" else ""
            lines.append(f"{mark}{label}: {check['detail']}")
    return lines


def unreadable(reason: str, seconds: float = 0.0) -> Validation:
    check = CheckResult("readable", None, "error", "fail", 0, reason)
    return Validation("rejected", None, None, {}, [check], {}, read_error=reason, seconds=seconds)


# -- building the plan -------------------------------------------------------------------------


def _kind(dtype: pl.DataType) -> str:
    if dtype.is_float():
        return "float"
    if dtype.is_integer():
        return "int"
    if dtype == pl.Boolean:
        return "bool"
    if dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum):
        return "string"
    if isinstance(dtype, pl.Datetime):
        return "datetime"
    if dtype == pl.Date:
        return "date"
    if dtype == pl.Null:
        return "null"
    return "other"


def _typed(name: str, dtype: pl.DataType, wanted: str | None) -> tuple[pl.Expr, str]:
    """The column as the declared type (values that do not convert become null) and its kind."""
    col = pl.col(name)
    have = _kind(dtype)
    if wanted is None or wanted == have or (wanted == "float" and have == "int"):
        return (
            col.cast(pl.Float64) if wanted == "float" and have == "int" else col
        ), wanted or have
    if have in ("string", "null"):
        text = col.cast(pl.String).str.strip_chars()
        if wanted == "int":
            return text.cast(pl.Int64, strict=False), wanted
        if wanted == "float":
            return text.cast(pl.Float64, strict=False), wanted
        if wanted == "datetime":
            return text.str.to_datetime(strict=False, time_unit="us"), wanted
        if wanted == "date":
            return text.str.to_date(strict=False), wanted
        if wanted == "bool":
            lowered = text.str.to_lowercase()
            mapping = {
                "true": True,
                "1": True,
                "yes": True,
                "false": False,
                "0": False,
                "no": False,
            }
            return lowered.replace_strict(mapping, default=None, return_dtype=pl.Boolean), wanted
        return col, wanted
    if wanted == "string":
        return col.cast(pl.String), wanted
    if wanted == "int" and have == "float":
        return pl.when(col == col.round()).then(col).otherwise(None).cast(
            pl.Int64, strict=False
        ), wanted
    if wanted == "datetime" and have == "date":
        return col.cast(pl.Datetime("us")), wanted
    return col.cast(TYPES[wanted], strict=False), wanted


@dataclass
class _Flag:
    check: str
    column: str | None
    severity: str
    expr: pl.Expr  # true on an offending row
    describe: Any  # count -> detail text
    # How the first pass counts the offending rows: None (sum the flag over the rows), an
    # aggregate, or a function of the aggregates' values (from the profile's counts). The
    # function may return None: the aggregates show offending rows but not how many; *recount*
    # (an aggregate) counts them afterwards, in the offending rows or in a pass of its own.
    count: Any = None
    recount: pl.Expr | None = None
    # A duplicates check: its column. Its expr (is_duplicated) would hold the whole file in
    # memory; the first pass compares the count with the distinct count instead, and only when
    # they differ are the duplicated values found (a streaming group-by) and marked by is_in.
    duplicates: pl.Expr | None = None


@dataclass
class _Retry:
    """Aggregates the first pass leaves out because their values usually follow from its others:
    *needed* tells from the first pass's values whether they must be collected after all (in one
    more pass over the file), and *otherwise* gives their values when they need not be."""

    needed: Callable[[dict[str, Any]], bool]
    exprs: dict[str, pl.Expr]
    otherwise: Callable[[dict[str, Any]], dict[str, Any]]


# The derived columns are computed in steps, each using the ones before: a column as its declared
# type, then its finite numbers (or its text), then the hash of its text.
TYPED, MASKED, HASHED = range(3)


@dataclass
class _Plan:
    flags: list[_Flag] = field(default_factory=list)
    aggregates: dict[str, pl.Expr] = field(default_factory=dict)
    static: list[CheckResult] = field(default_factory=list)
    # Checks decided from aggregates: (key of aggregate, decide(value, n_rows) -> CheckResult)
    deferred: list[Any] = field(default_factory=list)
    profile_columns: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Columns computed once per row before the aggregates and the offending-rows sink read them
    # (polars does not share a sub-expression repeated in many aggregates): one dict per step.
    derived: list[dict[str, pl.Expr]] = field(default_factory=lambda: [{}, {}, {}])
    # The seed of the text hashes, drawn for each plan so that no value can be made to collide
    # with a category on purpose.
    seed: int = field(default_factory=lambda: secrets.randbits(63))
    # Exact quantiles: no streaming aggregate (each column's values are held whatever the
    # engine), collected by the in-memory engine in a pass of their own: in the streaming one
    # their time grew with the square of their number (8 s for a 1,000-column reference, 32 s
    # for 2,000, hours for 20,000).
    held: set[str] = field(default_factory=set)
    # Aggregates collected again, in a pass of their own, only when the first pass's values ask
    # for them (see _Retry).
    retry: list[_Retry] = field(default_factory=list)
    # Text columns whose most frequent values are counted (no reference names their categories):
    # a group-by each, beside the first pass in the same read (value_counts among the first
    # pass's aggregates made polars hold the whole file in memory).
    tops: dict[str, pl.Expr] = field(default_factory=dict)
    _named: dict[str, list[str]] = field(default_factory=dict)  # derived columns by expression
    prefix: str = "_mldeck_tmp_"

    def once(self, expr: pl.Expr, step: int) -> pl.Expr:
        """*expr* as a column computed once per row (a plain column is returned as it is)."""
        if expr.meta.is_column():
            return expr
        for name in self._named.get(str(expr), ()):
            if self.derived[step].get(name) is not None and self.derived[step][name].meta.eq(expr):
                return pl.col(name)
        name = f"{self.prefix}{sum(map(len, self.derived))}"
        self.derived[step][name] = expr
        self._named.setdefault(str(expr), []).append(name)
        return pl.col(name)

    def frame(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        for columns in self.derived:
            if columns:
                frame = frame.with_columns(**columns)
        return frame


def _duplicates(plan: _Plan, check: str, name: str, severity: str, value: pl.Expr,
                describe: Any) -> None:  # fmt: skip
    """A check that no two rows share a value of *value*: the first pass counts its values and
    its distinct values (equal: none shared), in bounded memory."""
    key = f"dup::{len(plan.flags)}"
    plan.aggregates[f"{key}::values"] = value.count()
    plan.aggregates[f"{key}::distinct"] = value.drop_nulls().n_unique()

    def count(v: dict[str, Any], k: str = key) -> int | None:
        return 0 if v[f"{k}::values"] == v[f"{k}::distinct"] else None

    plan.flags.append(_Flag(check, name, severity,
                            (value.is_not_null() & value.is_duplicated()).fill_null(False),
                            describe, count=count, duplicates=value))  # fmt: skip


def _marking_duplicates(source: Source, plan: _Plan, flag: _Flag, engine: str) -> _Flag:
    """*flag* (a duplicates check that found some) marking the rows whose value is among the
    duplicated ones, found by a streaming group-by: no pass holds the whole file."""
    value = flag.duplicates
    shared = (
        plan.frame(source.frame)
        .select(value.alias("__value"))
        .drop_nulls()
        .group_by("__value")
        .agg(pl.len().alias("__n"))
        .filter(pl.col("__n") > 1)
        .select("__value")
        .collect(engine=engine)
        .get_column("__value")
    )
    marks = value.is_in(shared.implode()).fill_null(False)
    return dataclasses.replace(flag, expr=marks, recount=marks.sum())


def _values(count: int) -> str:
    return plural(count, "value")


def _below(value: pl.Expr, kind: str, bound: float) -> pl.Expr:
    """``value < bound``. An integer column is compared with an integer (x < b is x < ceil(b)
    for whole x) so that polars does not convert the column to floats for every comparison."""
    if kind == "int" and abs(bound) < 2**53:
        return value < math.ceil(bound)
    return value < bound


def _above(value: pl.Expr, kind: str, bound: float) -> pl.Expr:
    """``value > bound`` (for whole x, x > b is x > floor(b))."""
    if kind == "int" and abs(bound) < 2**53:
        return value > math.floor(bound)
    return value > bound


def _beyond(extreme: Any, check: str, kind: str, bound: float) -> bool:
    """Whether a column's finite minimum (*check* "min") or maximum is beyond *bound*, as
    ``_below`` / ``_above`` compare each value (None: no finite value)."""
    if extreme is None:
        return False
    if kind == "int" and abs(bound) < 2**53:
        return extreme < math.ceil(bound) if check == "min" else extreme > math.floor(bound)
    extreme = float(extreme)  # polars compares an integer column with a float as floats
    return extreme < bound if check == "min" else extreme > bound


def _profile_exprs(
    plan: _Plan,
    name: str,
    value: pl.Expr,
    finite: pl.Expr,
    kind: str,
    reference: dict[str, Any] | None,
    exact: bool,
) -> None:
    """The profile's aggregates of one column. *finite* is, for numbers, the column with NaN and
    infinities turned into nulls; for text and booleans, the column as text."""
    key = f"p::{name}::"
    spec: dict[str, Any] = {"kind": kind}
    plan.aggregates[key + "count"] = value.count()
    plan.aggregates[key + "nulls"] = value.null_count()
    if kind in ("int", "float"):
        edges = (reference or {}).get("histogram", {}).get("edges")

        def numbers(finite: pl.Expr) -> dict[str, pl.Expr]:
            # As the column's type: a bound check compares a 64-bit integer exactly (_beyond).
            found = {key + "min": finite.min(), key + "max": finite.max(),
                     key + "mean": finite.mean(), key + "std": finite.std()}  # fmt: skip
            if exact:
                # One aggregate for all of them: polars sorts the column once per quantile
                # aggregate, and its streaming engine hands each one to the in-memory engine
                # (time growing with the square of their number: minutes for a hundred columns).
                found[key + "q"] = finite.quantile(list(QUANTILES), "linear")
                plan.held.add(key + "q")
            # Counting the finite values below each edge is one comparison per edge (about 3x
            # cheaper than testing both ends of every bin); the bins are the differences of
            # these cumulative counts.
            for i, edge in enumerate(edges or ()):
                found[f"{key}below{i}"] = _below(finite, kind, edge).sum()
            return found

        if edges is not None:
            spec["edges"] = edges
        if kind == "float":
            # Infinities are the values neither null, NaN nor finite (see _profile).
            plan.aggregates[key + "finite"] = value.is_finite().sum()
        if kind == "float" and not exact:
            # Over the column as it is, not its finite values: the same figures while every
            # non-null value is finite (the usual case; masking each row cost about 8 % of the
            # pass). When some are not, they are computed again over the finite values alone, in
            # a pass of their own, with the count of NaN (none otherwise; see validate).
            plan.aggregates.update(numbers(value))
            plan.retry.append(_Retry(
                needed=lambda v: v[key + "count"] != v[key + "finite"],
                exprs={**numbers(finite), key + "nan": value.is_nan().sum()},
                otherwise=lambda v: {key + "nan": 0},  # every non-null value finite: no NaN
            ))  # fmt: skip
        else:
            if kind == "float":
                plan.aggregates[key + "nan"] = value.is_nan().sum()
            plan.aggregates.update(numbers(finite))
    elif kind in ("string", "bool"):
        text = finite
        # Estimated over the text, not the seeded hashes below (a little cheaper, but the
        # estimate then changed with the seed drawn for each validation: the same file, another
        # profile). Null counts as one value.
        distinct = {key + "distinct": text.approx_n_unique()}
        categories = _categories(reference)
        if categories is None:
            plan.aggregates.update(distinct)
            plan.tops[key + "top"] = text
        else:
            # Each value hashed once (64 bits, with the plan's random seed); the categories are
            # counted by comparing numbers, not text (about 3x cheaper). A value is miscounted
            # only if its hash equals a category's: about 1 in 2^64 per distinct value and
            # category.
            hashed = plan.once(text.hash(plan.seed), HASHED)
            spec["categories"] = list(categories)
            for i, code in enumerate(_hashes(categories, plan.seed)):
                plan.aggregates[f"{key}cat{i}"] = (hashed == code).sum()
            if (reference or {}).get("other"):
                # The reference held more values than it names (its most frequent ones): so
                # will this file, most likely; estimated in this pass.
                plan.aggregates.update(distinct)
            else:
                # Every value of the reference is one of its categories: when every value here
                # is too (the usual case), the distinct values are exactly the categories seen
                # (and null); estimated, in one more pass, only when some are not.
                cats = [f"{key}cat{i}" for i in range(len(categories))]
                plan.retry.append(_Retry(
                    needed=lambda v, cats=cats: v[key + "count"] > sum(v[c] for c in cats),
                    exprs=distinct,
                    otherwise=lambda v, cats=cats: {key + "distinct": sum(v[c] > 0 for c in cats)
                                                    + (v[key + "nulls"] > 0)},
                ))  # fmt: skip
    elif kind in ("datetime", "date"):
        plan.aggregates[key + "min"] = value.min()
        plan.aggregates[key + "max"] = value.max()
    plan.profile_columns[name] = spec


def _hashes(categories: list[str], seed: int) -> list[pl.Expr]:
    """The categories' hashes as literals, computed as polars hashes a column's text."""
    codes = pl.Series(categories, dtype=pl.String).hash(seed)
    return [pl.lit(code, dtype=pl.UInt64) for code in codes]


def _categories(reference: dict[str, Any] | None) -> list[str] | None:
    """The categories a column's reference names: a reference spec lists them, a stored reference
    profile has their frequencies."""
    ref = reference or {}
    categories = ref.get("categories")
    if categories is None and "frequencies" in ref:
        categories = list(ref["frequencies"])
    return None if categories is None else list(dict.fromkeys(str(c) for c in categories))


def _cannot_run(empty: pl.LazyFrame, expr: pl.Expr, *, condition: bool) -> str | None:
    """Why *expr* cannot run on the file's columns (None when it can), found on an empty frame
    with the file's schema: an unknown column, a type mismatch or a regex polars does not support
    is then a failed check, not an unreadable file."""
    try:
        dtype = empty.select(expr.alias("_")).collect().schema["_"]
    except Exception as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        if not lines:
            return type(exc).__name__
        # A regex error names its cause on a later line ("error: look-around ... not supported").
        cause = next((line for line in lines[1:] if line.startswith("error:")), None)
        return f"{lines[0]} {cause}" if cause else lines[0]
    if condition and dtype != pl.Boolean:
        return f"it gives {dtype}, not true or false"
    return None


def _shares(share: float, limit: float) -> tuple[str, str]:
    """*share* and *limit* as percentages with the digits that tell them apart: 3.45 % of rows
    against at most 3.4 % read "3.4% ... at most 3.4%", a failure that looked like a pass."""
    for digits in range(1, 7):
        shown = f"{share:.{digits}%}", f"{limit:.{digits}%}"
        if shown[0] != shown[1] or share == limit:
            return shown
    return shown


def _column_checks(
    plan: _Plan,
    name: str,
    dtype: pl.DataType,
    exp: ColumnExpectation,
    empty: pl.LazyFrame,
    value: pl.Expr,
    finite: pl.Expr,
    kind: str,
    categories: list[str] | None,
) -> None:
    """The column's checks; *value* is the column as its declared type, *finite* its finite
    numbers (NaN and infinities as nulls) or its text; *categories* those the profile counts."""
    raw = pl.col(name)
    key = f"p::{name}::"
    if (
        exp.type is not None
        and exp.type != _kind(dtype)
        and not (exp.type == "float" and _kind(dtype) == "int")
    ):
        plan.flags.append(_Flag("type", name, exp.severity_of("type"),
                                raw.is_not_null() & value.is_null(),
                                lambda n, t=exp.type, d=dtype: f"{_values(n)} {'is' if n == 1 else 'are'} not {t} (column read as {d})",
                                count=raw.count() - value.count()))  # fmt: skip
    if exp.max_null_fraction is not None and exp.max_null_fraction > 0:
        limit = exp.max_null_fraction
        plan.aggregates[f"nulls::{name}"] = value.null_count()
        plan.deferred.append((f"nulls::{name}", name, exp.severity_of("nulls"),
                              lambda n, rows, lim=limit: (n > lim * rows, "{} ({} of rows; at most {} allowed)".format(plural(n, "null"), *_shares(n / rows, lim)) if rows else "no rows")))  # fmt: skip
    elif not exp.nullable or exp.max_null_fraction == 0:
        plan.flags.append(_Flag("nulls", name, exp.severity_of("nulls"), raw.is_null(),
                                lambda n: f"{plural(n, 'null')} (none allowed)", count=raw.null_count()))  # fmt: skip
    if kind == "float" and not (exp.allow_nan and exp.allow_inf):
        # Counted from the profile's NaN, finite and non-null counts.
        if exp.allow_inf:
            bad, tally = value.is_nan(), lambda v: v[key + "nan"]
        elif exp.allow_nan:
            bad = value.is_infinite()
            tally = lambda v: v[key + "count"] - v[key + "nan"] - v[key + "finite"]  # noqa: E731
        else:  # neither null nor finite
            bad = value.is_not_null() & finite.is_null()
            tally = lambda v: v[key + "count"] - v[key + "finite"]  # noqa: E731
        plan.flags.append(_Flag("finite", name, exp.severity_of("finite"), bad.fill_null(False),
                                lambda n: f"{n} NaN or infinite {'value' if n == 1 else 'values'}", count=tally))  # fmt: skip
    # Bounds judge finite numbers: NaN and infinities are the finite check's (allow_nan/inf).
    for check, bound in (("min", exp.min), ("max", exp.max)):
        if bound is None:
            continue
        if kind not in ("int", "float", "null"):  # comparing text with a number cannot run
            plan.static.append(_result(check, name, exp.severity_of(check), True, 0,
                                       f"{check} needs numbers but the column is {kind} "
                                       f"(read as {dtype}; declare type = \"float\")"))  # fmt: skip
        else:
            # The count sums the comparison itself (a sum skips nulls): no filled copy per row.
            beyond = _below(finite, kind, bound) if check == "min" else _above(finite, kind, bound)
            word = "below" if check == "min" else "above"
            count: Any = beyond.sum()
            if kind in ("int", "float"):
                # The profile's min / max of the same finite values tell whether any value is
                # beyond the bound: no comparison per row in the first pass, and the count only
                # when there are some (rare: the offending rows are counted afterwards).
                count = lambda v, k=f"{key}{check}", c=check, b=bound, i=kind: (  # noqa: E731
                    None if _beyond(v[k], c, i, b) else 0
                )
            plan.flags.append(_Flag(check, name, exp.severity_of(check), beyond.fill_null(False),
                                    lambda n, m=bound, w=word: f"{_values(n)} {w} {m:g}",
                                    count=count, recount=beyond.sum()))  # fmt: skip
    if exp.categories is not None:
        allowed = list(dict.fromkeys(str(c) for c in exp.categories))
        text = finite if kind in ("string", "bool") else value.cast(pl.String)
        tally = None
        counted = categories if kind in ("string", "bool") else None
        extra = [c for c in allowed if c not in (counted or ())]
        if counted is not None and len(extra) <= MAX_EXTRA_COUNTED:
            # The profile counts the reference's categories: the values outside the allowed ones
            # are the non-null values less the allowed ones' counts (no lookup per row).
            keys = [f"{key}cat{i}" for i, c in enumerate(counted) if c in allowed]
            hashed = plan.once(text.hash(plan.seed), HASHED)
            for j, code in enumerate(_hashes(extra, plan.seed)):
                plan.aggregates[f"{key}allowed{j}"] = (hashed == code).sum()
                keys.append(f"{key}allowed{j}")
            tally = lambda v, ks=keys: v[key + "count"] - sum(v[k] for k in ks)  # noqa: E731
        plan.flags.append(_Flag("categories", name, exp.severity_of("categories"),
                                (text.is_not_null() & ~text.is_in(allowed)).fill_null(False),
                                lambda n: f"{_values(n)} outside the allowed categories",
                                count=tally))  # fmt: skip
    if exp.unique:
        _duplicates(plan, "unique", name, exp.severity_of("unique"), value,
                    lambda n: f"{n} rows share a value with another row")  # fmt: skip
    if exp.pattern is not None:
        matches = (finite if kind in ("string", "bool") else value.cast(pl.String)).str.contains(
            exp.pattern
        )
        problem = _cannot_run(plan.frame(empty), matches, condition=False)
        if problem:
            plan.static.append(_result("pattern", name, exp.severity_of("pattern"), True, 0,
                                       f"invalid pattern {exp.pattern!r}: {problem}"))  # fmt: skip
        else:
            plan.flags.append(_Flag("pattern", name, exp.severity_of("pattern"),
                                    (value.is_not_null() & ~matches).fill_null(False),
                                    lambda n, p=exp.pattern: f"{_values(n)} {'does' if n == 1 else 'do'} not match {p!r}"))  # fmt: skip
    if exp.expression is not None:
        try:
            condition = pl.sql_expr(exp.expression)
            # Judged on the file's own columns, the only ones it can name: on the plan's frame,
            # polars' list of valid columns would show the plan's derived ones too.
            problem = _cannot_run(empty, condition, condition=True)
        except Exception as exc:
            problem = str(exc)
        if problem:
            plan.static.append(_result("expression", name, exp.severity_of("expression"), True, 0,
                                       f"invalid expression {exp.expression!r}: {problem}"))  # fmt: skip
        else:
            plan.flags.append(_Flag("expression", name, exp.severity_of("expression"),
                                    (~condition).fill_null(False),
                                    lambda n, e=exp.expression: f"{n} rows where {e!r} is false"))  # fmt: skip


def build(
    source: Source,
    settings: DataSettings,
    reference: dict[str, Any] | None,
    *,
    exact_quantiles: bool,
    arrived_at: datetime,
) -> _Plan:
    plan = _Plan()
    table = settings.table
    declared = settings.columns
    present = set(source.columns)
    # A missing column is a warning when the table's columns check is one, or the column's own
    # "present" check (its severity, or warn = ["present"]): one result per severity.
    missing: dict[str, list[str]] = {"error": [], "warning": []}
    for name, exp in declared.items():
        if exp.required and name not in present:
            warned = "warning" in (table.severity_of("columns"), exp.severity_of("present"))
            missing["warning" if warned else "error"].append(name)
    for severity, names in missing.items():
        if names:
            plan.static.append(_result("columns", None, severity, True, 0,
                                       f"missing columns: {', '.join(names)}"))  # fmt: skip
    if declared and not table.allow_extra_columns:
        extra = [c for c in source.columns if c not in declared]
        if extra:
            shown = ", ".join(repr(c[:40]) for c in extra[:5]) + (" ..." if len(extra) > 5 else "")
            plan.static.append(_result("columns", None, table.severity_of("columns"), True, 0,
                                       f"unexpected columns: {shown}"))  # fmt: skip
    ref_columns = (reference or {}).get("columns", {})
    empty = pl.DataFrame(schema=source.schema).lazy()
    while any(name.startswith(plan.prefix) for name in source.columns):
        plan.prefix = "_" + plan.prefix
    for name in source.columns:
        dtype = source.schema[name]
        exp = declared.get(name)
        value, kind = _typed(name, dtype, exp.type if exp is not None else None)
        value = plan.once(value, TYPED)
        if kind in ("int", "float"):
            # NaN and infinities as nulls, once per row: statistics, histograms and bounds are
            # about finite numbers (null-skipping aggregates then need no filter).
            # (Not a derived column: the first pass does without it, see _profile_exprs.)
            finite = pl.when(value.is_finite()).then(value) if kind == "float" else value
        elif kind in ("string", "bool"):
            plain_text = value.meta.is_column() and dtype == pl.String
            finite = value if plain_text else plan.once(value.cast(pl.String), MASKED)
        else:
            finite = value
        if exp is not None:
            categories = _categories(ref_columns.get(name))
            _column_checks(plan, name, dtype, exp, empty, value, finite, kind, categories)
        _profile_exprs(plan, name, value, finite, kind, ref_columns.get(name), exact_quantiles)

    plan.aggregates["rows"] = pl.len()
    # A table check whose column is not in the file cannot run: it fails (or warns), naming it.
    if settings.id_column and table.unique_ids:
        ident_name, severity = settings.id_column, table.severity_of("unique_ids")
        if ident_name not in present:
            plan.static.append(_result("unique_ids", ident_name, severity, True, 0,
                                       f"the id column {ident_name!r} ([data] id_column) is not "
                                       "in the file"))  # fmt: skip
        else:
            _duplicates(plan, "unique_ids", ident_name, severity, pl.col(ident_name),
                        lambda n: f"{n} rows share an id with another row")  # fmt: skip
    if settings.timestamp_column and table.max_age_days:
        ts, severity = settings.timestamp_column, table.severity_of("freshness")
        kind = _kind(source.schema[ts]) if ts in present else None
        if kind is None:
            plan.static.append(_result("freshness", None, severity, True, 0,
                                       f"the timestamp column {ts!r} ([data] timestamp_column) "
                                       "is not in the file"))  # fmt: skip
        elif kind not in ("datetime", "date", "string", "null"):
            # Numbers are not taken for times (an int would be read as microseconds since 1970).
            plan.static.append(_result("freshness", None, severity, True, 0,
                                       f"the timestamp column {ts!r} holds {kind} values, not "
                                       "timestamps"))  # fmt: skip
        else:
            value, _ = _typed(ts, source.schema[ts], "datetime")
            plan.aggregates["newest"] = value.max()
            limit = table.max_age_days
            plan.deferred.append(("newest", None, severity,
                                  lambda newest, rows, lim=limit: _freshness(newest, arrived_at, lim)))  # fmt: skip
    return plan


def _freshness(newest: Any, arrived_at: datetime, limit_days: float) -> tuple[bool, str]:
    if newest is None:
        return True, "no timestamps to judge freshness by"
    if newest.tzinfo is None:
        newest = newest.replace(tzinfo=UTC)
    age = arrived_at - newest
    days = age / timedelta(days=1)
    return days > limit_days, f"newest row is {days:.1f} days old (at most {limit_days:g} allowed)"


# -- running it --------------------------------------------------------------------------------


def validate(
    source: Source,
    settings: DataSettings,
    *,
    reference: dict[str, Any] | None = None,
    offending_path: Path | None = None,
    exact_quantiles: bool = False,
    arrived_at: datetime | None = None,
    engine: str = "streaming",
) -> Validation:
    """Check and profile *source*; offending rows go to *offending_path* (Parquet).

    One plan computes every check's count and the profile. Only when a count is not zero, and
    *offending_path* is given, a second streaming pass writes the offending rows (with a reason
    column): a clean file is read once.

    *reference* is the reference's profile: its bin edges and categories shape this profile.
    """
    started = time.perf_counter()
    arrived_at = arrived_at or datetime.now(UTC)

    def run(source: Source) -> tuple[_Plan, dict[str, Any]]:
        plan = build(
            source, settings, reference, exact_quantiles=exact_quantiles, arrived_at=arrived_at
        )
        aggregates = first_pass(plan)
        frame = plan.frame(source.frame)
        held = {k: aggregates.pop(k) for k in plan.held if k in aggregates}
        if not plan.tops:
            values = frame.select(**aggregates).collect(engine=engine).row(0, named=True)
            if held:
                values.update(frame.select(**held).collect(engine="in-memory").row(0, named=True))
            return plan, values
        counted = [
            frame.select(text.alias("value")).drop_nulls().group_by("value")
            .agg(pl.len().alias("count"))
            .sort(["count", "value"], descending=[True, False]).head(TOP_CATEGORIES)
            for text in plan.tops.values()
        ]  # fmt: skip
        found, *tops = pl.collect_all([frame.select(**aggregates), *counted], engine=engine)
        values = found.row(0, named=True)
        if held:
            values.update(frame.select(**held).collect(engine="in-memory").row(0, named=True))
        values.update((key, top.to_dicts()) for key, top in zip(plan.tops, tops, strict=True))
        return plan, values

    try:
        # a CSV column polars misreads past its first rows is read again as text, and checked
        (plan, values), source = source.read(run)
    except Exception as exc:
        return unreadable(source.why(exc), time.perf_counter() - started)
    n_rows = int(values["rows"])
    try:
        # Float columns holding NaN or infinities: their statistics over the finite values; text
        # columns holding values outside the categories counted: their distinct values.
        retry = {}
        for later in plan.retry:
            if later.needed(values):
                retry.update(later.exprs)
            else:
                values.update(later.otherwise(values))
        if retry:
            again = plan.frame(source.frame).select(**retry).collect(engine=engine)
            values.update(again.row(0, named=True))
    except Exception as exc:
        return unreadable(source.why(exc), time.perf_counter() - started)

    # Each flag's count; None where the first pass shows offending rows without counting them.
    counts: list[int | None] = []
    for i, flag in enumerate(plan.flags):
        if callable(flag.count) and not isinstance(flag.count, pl.Expr):
            count = flag.count(values)
        else:
            count = values[f"flag::{i}"]
        counts.append(None if count is None else int(count))
    offending = 0
    unkept = ""
    try:
        plan.flags = [
            _marking_duplicates(source, plan, flag, engine)
            if flag.duplicates is not None and n is None else flag
            for flag, n in zip(plan.flags, counts, strict=True)
        ]  # fmt: skip
        if offending_path is not None and any(n != 0 for n in counts):
            flags = [f for f, n in zip(plan.flags, counts, strict=True) if n != 0]
            try:
                offending = _write_offending(source, plan, flags, offending_path, engine)
            except pl.exceptions.PolarsError as exc:
                # The rows could not be kept (a type Parquet cannot hold): the file was read
                # and counted all the same, and is judged on that (it was called unreadable).
                offending = 0
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                unkept = f"the offending rows were not kept: {first[:200]}"
        if None in counts:
            # Counted in the offending rows just written (every row such a flag marks is there),
            # or else in a pass of their own over the file.
            rows = pl.scan_parquet(offending_path, glob=False) if offending else source.frame
            pending = {f"flag::{i}": f.recount for i, (f, n) in
                       enumerate(zip(plan.flags, counts, strict=True)) if n is None}  # fmt: skip
            found = plan.frame(rows).select(**pending).collect(engine=engine).row(0, named=True)
            counts = [int(found[f"flag::{i}"] or 0) if n is None else n
                      for i, n in enumerate(counts)]  # fmt: skip
    except Exception as exc:
        return unreadable(source.why(exc), time.perf_counter() - started)

    checks: list[CheckResult] = list(plan.static)
    checks.append(_rows_check(settings, n_rows))
    if source.file_format == "csv" and source.columns and values[f"p::{source.columns[-1]}::nulls"]:
        # A CSV row with fewer fields than the header reads as nulls in its last columns (a
        # file cut short, a row missing a value): its lines are looked at only when the last
        # column holds nulls.
        short = short_records(source.path, source.separator, len(source.columns))
        if short is not None:
            checks.append(_result("fields", None, settings.table.severity_of("fields"), True,
                                  short.count, short.describe(len(source.columns))))  # fmt: skip
    for flag, count in zip(plan.flags, counts, strict=True):
        checks.append(_result(flag.check, flag.column, flag.severity, count > 0, count,
                              flag.describe(count) if count else "ok"))  # fmt: skip
    for key, column, severity, decide in plan.deferred:
        bad, detail = decide(values[key], n_rows)
        check = "nulls" if key.startswith("nulls::") else "freshness"
        # A null share above the limit counts the null rows; freshness is about the table.
        count = int(values[key] or 0) if bad and check == "nulls" else 0
        checks.append(_result(check, column, severity, bad, count, detail if bad else "ok"))
    if offending:
        _attach_examples(checks, pl.scan_parquet(offending_path, glob=False), settings.examples)
    elif unkept:  # said with the checks that have no examples to show
        for check in checks:
            if check.status != "pass" and check.failed_rows:
                check.detail = f"{check.detail} ({unkept})"
    status = _status(checks)
    profile = _profile(plan, values, n_rows, exact_quantiles)
    schema = {name: str(dtype) for name, dtype in source.schema.items()}
    for name in source.as_text:  # read as text, checked (and used later) as declared
        declared = settings.columns.get(name)
        if declared is not None and declared.type in ("int", "float"):
            schema[name] = str(TYPES[declared.type])
    return Validation(status, n_rows, len(source.columns), schema, checks, profile,
                      offending_rows=offending, seconds=time.perf_counter() - started)  # fmt: skip


def first_pass(plan: _Plan) -> dict[str, pl.Expr]:
    """What the first pass collects: the plan's aggregates and the flags counted by a sum over
    the rows or by an aggregate of their own (the others are told by the aggregates' values)."""
    aggregates = dict(plan.aggregates)
    for i, flag in enumerate(plan.flags):
        if flag.count is None:
            aggregates[f"flag::{i}"] = flag.expr.sum()
        elif isinstance(flag.count, pl.Expr):
            aggregates[f"flag::{i}"] = flag.count
    return aggregates


def _kept(name: str, dtype: pl.DataType) -> pl.Expr:
    """A column as the offending rows' file keeps it: a struct without fields (``{}`` in
    NDJSON) as its JSON text (Parquet has no such type), and a column named like the file's own
    row number or reasons as "NAME (file)"."""
    column = pl.col(name)
    if isinstance(dtype, pl.Struct) and not dtype.fields:
        column = column.struct.json_encode()
    return column.alias(f"{name} (file)") if name in (ROW, REASON) else column


def _write_offending(
    source: Source, plan: _Plan, flags: list[_Flag], path: Path, engine: str
) -> int:
    """Stream the rows any of *flags* marks, with their row number and reasons, to *path*
    (through a temporary name); the number of rows written."""
    reason = pl.concat_str(
        [pl.when(f.expr).then(pl.lit(f"{f.check}({f.column})" if f.column else f.check))
         for f in flags],
        separator="; ", ignore_nulls=True,
    )  # fmt: skip
    partial = path.with_name(path.name + ".partial")
    index = "_mldeck_tmp_row"  # named ROW at the end: the file may have a column named so
    while index in source.schema:
        index += "_"
    kept = [_kept(name, source.schema[name]) for name in source.columns]
    try:
        (
            plan.frame(source.frame.with_row_index(index))
            .filter(pl.any_horizontal([f.expr for f in flags]))
            .select(pl.col(index).alias(ROW), *kept, reason.alias(REASON))
            .sink_parquet(partial, engine=engine)
        )
        written = pl.scan_parquet(partial, glob=False).select(pl.len()).collect().item()
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    if not written:  # the file changed between the passes
        partial.unlink()
        return 0
    partial.replace(path)
    return written


def _result(
    check: str, column: str | None, severity: str, bad: bool, count: int, detail: str
) -> CheckResult:
    status = "pass" if not bad else ("fail" if severity == "error" else "warn")
    return CheckResult(check, column, severity, status, count, detail)


def _rows_check(settings: DataSettings, n_rows: int) -> CheckResult:
    table = settings.table
    severity = table.severity_of("rows")
    if n_rows < table.min_rows:
        return _result(
            "rows", None, severity, True, 0, f"{n_rows} rows (at least {table.min_rows} expected)"
        )
    if table.max_rows is not None and n_rows > table.max_rows:
        return _result(
            "rows", None, severity, True, 0, f"{n_rows} rows (at most {table.max_rows} expected)"
        )
    return _result("rows", None, severity, False, 0, f"{n_rows} rows")


def _status(checks: list[CheckResult]) -> str:
    if any(c.status == "fail" for c in checks):
        return "rejected"
    if any(c.status == "warn" for c in checks):
        return "warned"
    return "accepted"


def _attach_examples(checks: list[CheckResult], flagged: pl.LazyFrame, limit: int) -> None:
    """A few offending rows per failed check, read back from the (small) offending-rows file."""
    if limit == 0:
        return
    for check in checks:
        if check.status == "pass" or check.failed_rows == 0:
            continue
        rows = (
            flagged.filter(pl.col(REASON).str.contains(check.label, literal=True))
            .head(limit)
            .collect()
        )
        check.examples = [_jsonable_row(row) for row in rows.iter_rows(named=True)]


def _jsonable_row(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in row.items():
        if key == REASON:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            value = str(value)
        elif isinstance(value, str) and len(value) > 200:
            value = value[:199] + "…"
        elif not isinstance(value, str | int | float | bool | type(None)):
            value = str(value)
        out[key] = value
    return out


def _number(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _profile(plan: _Plan, values: dict[str, Any], n_rows: int, exact: bool) -> dict[str, Any]:
    columns: dict[str, Any] = {}
    for name, spec in plan.profile_columns.items():
        key = f"p::{name}::"
        kind = spec["kind"]
        entry: dict[str, Any] = {"kind": kind, "count": int(values[key + "count"]),
                                 "nulls": int(values[key + "nulls"])}  # fmt: skip
        if kind in ("int", "float"):
            finite = entry["count"]
            if kind == "float":
                entry["nan"] = int(values[key + "nan"] or 0)
                finite = int(values[key + "finite"] or 0)
                entry["inf"] = entry["count"] - entry["nan"] - finite
            for stat in ("min", "max", "mean", "std"):
                entry[stat] = _number(values[key + stat])
            if exact:
                found = values[key + "q"] or [None] * len(QUANTILES)
                entry["quantiles"] = {
                    str(q): _number(v) for q, v in zip(QUANTILES, found, strict=True)
                }
            if "edges" in spec:
                below = [int(values[f"{key}below{i}"] or 0) for i in range(len(spec["edges"]))]
                counts = [b - a for a, b in itertools.pairwise([0, *below, finite])]
                entry["histogram"] = {"edges": spec["edges"], "counts": counts}
                if not exact:
                    entry["quantiles"] = _quantiles_from_histogram(entry, spec["edges"], counts)
        elif kind in ("string", "bool"):
            entry["distinct"] = int(values[key + "distinct"])
            if "categories" in spec:
                counts = {c: int(values[f"{key}cat{i}"]) for i, c in enumerate(spec["categories"])}
                entry["frequencies"] = counts
                entry["other"] = entry["count"] - sum(counts.values())
            else:
                top = values[key + "top"] or []
                field_name = next((k for k in (top[0] if top else {}) if k != "count"), None)
                entry["frequencies"] = {str(item[field_name]): int(item["count"]) for item in top}
                entry["other"] = entry["count"] - sum(entry["frequencies"].values())
        elif kind in ("datetime", "date"):
            for stat in ("min", "max"):
                entry[stat] = None if values[key + stat] is None else values[key + stat].isoformat()
        columns[name] = entry
    return {"n_rows": n_rows, "columns": columns}


def _quantiles_from_histogram(
    entry: dict[str, Any], edges: list[float], counts: list[int]
) -> dict[str, float | None]:
    """Quantiles interpolated within the reference's bins (bounded memory, no sort)."""
    total = sum(counts)
    low, high = entry.get("min"), entry.get("max")
    if not total or low is None or high is None:
        return {str(q): None for q in QUANTILES}
    bounds = [low, *[min(max(e, low), high) for e in edges], high]
    result: dict[str, float | None] = {}
    for q in QUANTILES:
        target, seen = q * total, 0
        for i, count in enumerate(counts):
            if count and seen + count >= target:
                frac = (target - seen) / count
                result[str(q)] = bounds[i] + frac * (bounds[i + 1] - bounds[i])
                break
            seen += count
        else:
            result[str(q)] = high
    return result


def reference_profile(source: Source, settings: DataSettings) -> Validation:
    """Profile (and check) a reference file: histograms on its own equal-frequency bin edges,
    frequencies of its categories, exact quantiles. Done once per reference, so the edges take an
    extra pass over the numeric columns."""

    def run(source: Source) -> tuple[dict[str, list[float]], dict[str, list[str]]]:
        kinds: dict[str, str] = {}
        for name in source.columns:
            declared = settings.columns.get(name)
            kinds[name] = (declared.type if declared and declared.type else None) or _kind(
                source.schema[name]
            )
        numeric = [n for n, k in kinds.items() if k in ("int", "float")]
        edges: dict[str, list[float]] = {}
        if numeric:
            exprs = []
            for name in numeric:
                value = _typed(name, source.schema[name], kinds[name])[0].cast(pl.Float64)
                value = value.filter(value.is_finite())
                # All the edges of a column in one aggregate (see _profile_exprs).
                exprs.append(value.quantile(list(EDGE_QUANTILES), "linear").alias(name))
            # Quantiles are no streaming aggregate: each column's values are held whatever the
            # engine, and the streaming one would hand every column over in turn (seconds for
            # a thousand columns, hours for tens of thousands).
            row = source.frame.select(exprs).collect(engine="in-memory").row(0, named=True)
            for name in numeric:
                found = (_number(v) for v in row[name] or [])
                edges[name] = sorted({v for v in found if v is not None})
        categorical = [n for n, k in kinds.items() if k in ("string", "bool")]
        categories: dict[str, list[str]] = {}
        if categorical:
            first = (
                source.frame.select(
                    pl.col(n)
                    .cast(pl.String)
                    .drop_nulls()
                    .value_counts(sort=True)
                    .head(TOP_CATEGORIES)
                    .implode()
                    for n in categorical
                )
                .collect(engine="streaming")
                .row(0, named=True)
            )
            for name in categorical:
                categories[name] = [str(item[name]) for item in first[name] or []]
        return edges, categories

    try:
        (edges, categories), source = source.read(run)
    except Exception as exc:
        return unreadable(source.why(exc))
    reference = {"columns": {}}
    for name in source.columns:
        if name in edges:
            reference["columns"][name] = {"histogram": {"edges": edges[name]}}
        elif name in categories:
            reference["columns"][name] = {"categories": categories[name]}
    return validate(source, settings, reference=reference, exact_quantiles=True)
