"""Data expectations as declared in ``mldeck.toml`` (``[data]``, ``[data.table]``,
``[data.columns.NAME]``): pure settings (polars is imported only to judge a pattern or an
expression when the file loads, since polars is what runs them).

Each check has a severity: ``error`` (the batch is rejected) or ``warning`` (accepted, flagged).
A column's ``severity`` is the default for its checks; ``warn = ["max", ...]`` downgrades single
checks to warnings.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from mldeck.sections import MAX_DAYS
from mldeck.sections import Section as _Strict

Severity = Literal["error", "warning"]
ColumnType = Literal["int", "float", "string", "bool", "datetime", "date"]
COLUMN_CHECKS = (
    "present", "type", "nulls", "finite", "min", "max", "categories", "unique", "pattern",
    "expression",
)  # fmt: skip
TABLE_CHECKS = ("columns", "rows", "fields", "freshness", "unique_ids")


def _polars_said(exc: BaseException) -> str:
    """The cause in one line of an error polars raised (without the expression it quotes)."""
    text = str(exc).split("This error occurred in the following expression")[0]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    # A regex error names its cause on a later line ("error: look-around ... not supported").
    cause = next((line for line in lines[1:] if line.startswith("error:")), None)
    said = cause.removeprefix("error:").strip() if cause else lines[0]
    said = said.removeprefix("regex error:").strip()
    return said if len(said) <= 120 else said[:119] + "…"


class ColumnExpectation(_Strict):
    type: ColumnType | None = None
    required: bool = True
    nullable: bool = True
    # Largest share of nulls allowed (0..1); implies nullable when above 0.
    max_null_fraction: float | None = Field(None, ge=0, le=1)
    # Floats only: NaN and infinities are violations unless allowed.
    allow_nan: bool = False
    allow_inf: bool = False
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None
    unique: bool = False
    pattern: str | None = None
    # A polars SQL expression that must hold on every row, e.g. "total_charges >= 0".
    expression: str | None = None
    severity: Severity = "error"
    warn: list[str] = Field(default_factory=list)

    @field_validator("pattern")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        """The pattern is run by polars (Rust's regex syntax: no look-around, no backreferences,
        but ``\\p{L}``), so polars judges it when the file loads: refused there, it would fail
        every batch's check."""
        if value is not None:
            import polars as pl  # only for a workspace that has a pattern

            try:
                pl.select(pl.lit("").str.contains(value))
            except Exception as exc:
                raise ValueError(
                    f"{value!r} is not a regular expression polars can run: {_polars_said(exc)}"
                ) from None
        return value

    @field_validator("expression")
    @classmethod
    def _sql(cls, value: str | None) -> str | None:
        """An expression that does not parse is a mistake in the file, said when it loads: as
        a check it would reject every batch as if the data were bad."""
        if value is not None:
            import polars as pl  # only for a workspace that has an expression

            try:
                pl.sql_expr(value)
            except Exception as exc:
                said = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                said = said if len(said) <= 120 else said[:119] + "…"
                raise ValueError(f"not a valid polars SQL expression: {said}") from None
        return value

    @field_validator("warn")
    @classmethod
    def _known_checks(cls, value: list[str]) -> list[str]:
        unknown = [v for v in value if v not in COLUMN_CHECKS]
        if unknown:
            raise ValueError(f"unknown check {unknown[0]!r} (checks: {', '.join(COLUMN_CHECKS)})")
        return value

    @model_validator(mode="after")
    def _bounds(self) -> ColumnExpectation:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        # Settings no batch could meet as written: each batch was rejected instead, as if the
        # data were wrong.
        bounded = [key for key in ("min", "max") if getattr(self, key) is not None]
        if bounded and self.type not in (None, "int", "float"):
            verb = "bound" if len(bounded) == 2 else "bounds"
            raise ValueError(f"{' and '.join(bounded)} {verb} numbers, and the column is declared "
                             f"type = {self.type!r}")  # fmt: skip
        return self

    def severity_of(self, check: str) -> Severity:
        """The severity of one of the column's checks (``present``: a required column missing
        from the file)."""
        return "warning" if check in self.warn else self.severity


class TableExpectation(_Strict):
    min_rows: int = Field(1, ge=0)
    max_rows: int | None = Field(None, ge=0)
    # The newest timestamp must be at most this many days older than the batch's arrival.
    max_age_days: float | None = Field(None, gt=0, le=MAX_DAYS)
    # No two rows share an id (needs [data] id_column).
    unique_ids: bool = True
    # Columns not declared under [data.columns] are an error (a wrong delimiter shows up here).
    allow_extra_columns: bool = False
    severity: Severity = "error"
    warn: list[str] = Field(default_factory=list)

    @field_validator("warn")
    @classmethod
    def _known_checks(cls, value: list[str]) -> list[str]:
        unknown = [v for v in value if v not in TABLE_CHECKS]
        if unknown:
            raise ValueError(f"unknown check {unknown[0]!r} (checks: {', '.join(TABLE_CHECKS)})")
        return value

    @model_validator(mode="after")
    def _bounds(self) -> TableExpectation:
        if self.max_rows is not None and self.min_rows > self.max_rows:
            raise ValueError(
                f"min_rows ({self.min_rows}) is above max_rows ({self.max_rows}): no batch "
                "could pass"
            )
        return self

    def severity_of(self, check: str) -> Severity:
        return "warning" if check in self.warn else self.severity


class DataSettings(_Strict):
    # The dataset that files landing in data/incoming/ belong to.
    dataset: str = Field("default", min_length=1, max_length=200)
    timestamp_column: str | None = None
    id_column: str | None = None
    # A file whose profile is the baseline: histograms of batches use its bin edges.
    reference: str | None = None
    # CSV options for files that are not Parquet or NDJSON.
    csv_separator: str = Field(",", min_length=1, max_length=1)
    # Seconds a file's size must stay unchanged before the watcher takes it.
    settle_seconds: float = Field(1.0, ge=0, le=600)
    # Offending rows kept as examples in a report, per check.
    examples: int = Field(5, ge=0, le=100)
    table: TableExpectation = TableExpectation()
    columns: dict[str, ColumnExpectation] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _freshness_has_its_column(self) -> DataSettings:
        if self.table.max_age_days is not None and not self.timestamp_column:
            # the check was skipped without a word: batches of any age accepted
            raise ValueError("[data.table] max_age_days needs [data] timestamp_column, the column "
                             "a batch's age is read from")  # fmt: skip
        return self

    @property
    def declared(self) -> bool:
        """Whether any column is declared (then the schema is checked too)."""
        return bool(self.columns)
