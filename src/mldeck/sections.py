"""What every section of ``mldeck.toml`` shares: an unknown key is refused (a typo never goes
unnoticed), values are frozen, a number is finite (TOML's ``nan`` and ``inf`` are refused with
their own sentence, not a bound's), and a value is of its key's type (``retries = true`` was 1
retry, ``enabled = "no"`` false; a whole number is taken where a decimal one is asked). ``MAX_SECONDS`` bounds every duration a setting names:
longer ones overflow Python's dates."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

MAX_SECONDS = 10 * 366 * 86_400  # ten years
# The largest row id or version number (a setting or an argument naming one): ids are INTEGER
# on PostgreSQL (SQLite's go further, but no store holds that many rows); a larger number names
# nothing, and PostgreSQL refused to compare it with the column.
MAX_ID = 2**31 - 1
MAX_HOURS = MAX_SECONDS / 3600
MAX_DAYS = MAX_SECONDS / 86_400


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)
