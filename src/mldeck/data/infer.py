"""``mldeck data infer``: a starting set of expectations, as TOML, from a reference file's profile.

The result is meant to be read and edited: bounds are loose on purpose (a lower bound of 0 for
non-negative numbers, an upper bound at twice the largest value seen, as a warning), null
allowances are twice what the reference shows, and categories are the ones seen.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from mldeck.data.readers import Source
from mldeck.data.validate import Validation
from mldeck.errors import MldeckError

MAX_CATEGORIES = 50
ID_SUFFIXES = ("_id", "id", "_key", "uuid")


def numbers_read_as_text(source: Source) -> Source:
    """*source* with its text columns whose every value is a number read as floats.

    The CSV reader takes ``nan`` (lower case) for text, so a float column holding it would be
    inferred as a string column with the numbers as its categories; validation itself reads
    such a column as the float its expectations declare.
    """
    import polars as pl

    text = [name for name, dtype in source.schema.items() if dtype == pl.String]
    if not text:
        return source
    counts = source.frame.select(
        *(pl.col(name).is_not_null().sum().alias(f"n{i}") for i, name in enumerate(text)),
        *(pl.col(name).cast(pl.Float64, strict=False).is_not_null().sum().alias(f"f{i}")
          for i, name in enumerate(text)),
    ).collect().row(0, named=True)  # fmt: skip
    numeric = [name for i, name in enumerate(text) if 0 < counts[f"n{i}"] == counts[f"f{i}"]]
    if not numeric:
        return source
    frame = source.frame.with_columns(pl.col(numeric).cast(pl.Float64))
    schema = {
        name: pl.Float64() if name in numeric else dtype for name, dtype in source.schema.items()
    }
    return Source(source.path, source.file_format, frame, source.columns, schema, source.separator)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return _toml_string(str(value))


def _toml_string(text: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, except that TOML refuses a raw DEL."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _key(name: str) -> str:
    bare = name and all(c.isascii() and (c.isalnum() or c in "-_") for c in name)
    return name if bare else _toml_string(name)


def _round_up(value: float) -> float:
    """*value* to 6 significant digits, never below it (a bound must hold for what was seen)."""
    if not (math.isfinite(value) and value > 0):
        return value
    step = 10.0 ** (math.floor(math.log10(value)) - 5)
    rounded = float(f"{math.ceil(value / step) * step:.6g}")
    return rounded if rounded >= value else math.nextafter(value, math.inf)


def guess_columns(validation: Validation) -> tuple[str | None, str | None]:
    """(timestamp column, id column) guessed from the profile."""
    columns = validation.profile.get("columns", {})
    n_rows = validation.n_rows or 0
    timestamp = next((n for n, c in columns.items() if c["kind"] in ("datetime", "date")), None)
    ident = None
    for name, col in columns.items():
        lowered = name.lower()
        if col["kind"] in ("int", "string") and lowered.endswith(ID_SUFFIXES):
            if col.get("nulls", 0):
                continue
            if col["kind"] == "int":
                # Whole numbers spanning fewer values than there are rows must repeat ("paid").
                low, high = col.get("min"), col.get("max")
                unique = low is not None and high is not None and high - low + 1 >= n_rows
            else:
                distinct = col.get("distinct")
                unique = distinct is None or distinct >= 0.97 * n_rows
            if unique:
                ident = name
                break
    return timestamp, ident


def expectations_toml(
    validation: Validation,
    *,
    dataset: str,
    reference: str | None = None,
    separator: str | None = None,
) -> str:
    """The ``[data]`` section (with table and column expectations) for *validation*'s file."""
    timestamp, ident = guess_columns(validation)
    n_rows = validation.n_rows or 0
    lines = [
        "# Expectations inferred by 'mldeck data infer' from a reference file: edit them.",
        "# Each check is an error (the batch is rejected) unless listed in the column's 'warn'.",
        "[data]",
        f"dataset = {_toml_value(dataset)}",
    ]
    if reference:
        lines.append(f"reference = {_toml_value(reference)}")
    if separator and separator != ",":  # the reference's own: batches are read with it too
        lines.append(f"csv_separator = {_toml_value(separator)}")
    if timestamp:
        lines.append(f"timestamp_column = {_toml_value(timestamp)}")
    if ident:
        lines.append(f"id_column = {_toml_value(ident)}")
    lines += ["", "[data.table]", "min_rows = 1", f"unique_ids = {_toml_value(bool(ident))}",
              "# A CSV row with fewer fields than the header is an error; to take one whose "
              "producer leaves",
              '# trailing empty fields out, with a warning: warn = ["fields"]']  # fmt: skip
    for name, col in validation.profile.get("columns", {}).items():
        lines += ["", f"[data.columns.{_key(name)}]"]
        kind = col["kind"]
        if kind in ("int", "float", "string", "bool", "datetime", "date"):
            lines.append(f"type = {_toml_value(kind)}")
        nulls = col.get("nulls", 0)
        if nulls == 0:
            lines.append("nullable = false")
        elif n_rows:
            share = min(1.0, math.ceil((2 * nulls / n_rows + 0.005) * 1000) / 1000)
            lines.append(f"max_null_fraction = {share}")
        if kind == "float":  # seen in the reference, so not a violation by default
            if col.get("nan"):
                lines.append("allow_nan = true")
            if col.get("inf"):
                lines.append("allow_inf = true")
        if kind in ("int", "float") and name != ident:
            low, high = col.get("min"), col.get("max")
            if low is not None and low >= 0:
                lines.append("min = 0")
            if high is not None and high > 0:
                bound = 2 * high
                lines.append(f"max = {math.ceil(bound) if kind == 'int' else _round_up(bound)}")
                lines.append('warn = ["max"]')
        elif kind == "string" and name != ident:
            frequencies = col.get("frequencies", {})
            if frequencies and col.get("other", 0) == 0 and len(frequencies) <= MAX_CATEGORIES:
                lines.append(f"categories = {_toml_value(sorted(frequencies))}")
    return "\n".join(lines) + "\n"


def append_to_config(config_path: Path, text: str) -> None:
    """Append *text* to ``mldeck.toml`` if the result still parses and it had no [data] yet."""
    current = config_path.read_text(encoding="utf-8-sig")
    if any(line.strip().startswith("[data") for line in current.splitlines()):
        raise MldeckError(
            f"{config_path} already has a [data] section; print the inferred one with "
            "'mldeck data infer FILE' and merge it by hand"
        )
    from mldeck.config import parse_settings

    updated = current.rstrip("\n") + "\n\n" + text
    parse_settings(updated, str(config_path))  # never write a config that does not load
    tmp = config_path.with_name(config_path.name + ".tmp")
    tmp.write_text(updated, encoding="utf-8")
    os.replace(tmp, config_path)
