"""What every section of ``mldeck.toml`` shares: an unknown key is refused (a typo never goes
unnoticed), values are frozen, a number is finite (TOML's ``nan`` and ``inf`` are refused with
their own sentence, not a bound's), true/false is only a yes-or-no's (``retries = true`` was
1 retry, ``enabled = "no"`` was false) and a number is not text (``below = "0.7"``). Otherwise pydantic reads as it does: ``7200.0`` is taken
for a whole number. ``MAX_SECONDS`` bounds every duration a setting names: longer ones overflow
Python's dates."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

MAX_SECONDS = 10 * 366 * 86_400  # ten years
# The largest row id or version number (a setting or an argument naming one): ids are INTEGER
# on PostgreSQL (SQLite's go further, but no store holds that many rows); a larger number names
# nothing, and PostgreSQL refused to compare it with the column.
MAX_ID = 2**31 - 1
MAX_HOURS = MAX_SECONDS / 3600
MAX_DAYS = MAX_SECONDS / 86_400


def _kinds(annotation: Any) -> set[Any]:
    """The types a field's annotation allows (``int | None`` allows int and None)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return set(typing.get_args(annotation))
    return {annotation}


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _yes_or_no_only_for_a_yes_or_no(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if field is None or value is None:
            return value
        kinds = _kinds(field.annotation)
        if bool in kinds and not isinstance(value, bool):
            raise ValueError(f"true or false, not {value!r}")
        if bool not in kinds and isinstance(value, bool) and kinds & {int, float}:
            raise ValueError(f"a number, not {str(value).lower()}")
        if str not in kinds and isinstance(value, str) and kinds & {int, float}:
            # below = "0.7" was read as 0.7 while hours = "24h" was refused: a number is written
            # as one.
            raise ValueError(f"a number, not the text {value!r}")
        if isinstance(value, dict):  # and in a table of numbers (min = {roc_auc = "0.75"})
            for kind in kinds:
                if typing.get_origin(kind) is dict:
                    inner = _kinds(typing.get_args(kind)[1])
                    for key, item in value.items():
                        if str not in inner and isinstance(item, str) and inner & {int, float}:
                            raise ValueError(f"{key}: a number, not the text {item!r}")
                        if bool not in inner and isinstance(item, bool) and inner & {int, float}:
                            # min = {roc_auc = true} was a floor of 1, false a margin of 0
                            raise ValueError(f"{key}: a number, not {str(item).lower()}")
        return value
