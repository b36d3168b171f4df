"""``mldeck.toml`` → typed settings.

The file is TOML; every section and key is declared here, so a misspelt key is an error that names
the key and the keys that are allowed, never a silently ignored setting.
"""

from __future__ import annotations

import json
import tomllib
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, model_validator

from mldeck.data.expectations import DataSettings
from mldeck.errors import ConfigError
from mldeck.jobs.settings import DEFAULT_CONFIG as JOBS_DEFAULT_CONFIG
from mldeck.jobs.settings import JobSettings
from mldeck.ml.settings import METRICS, GateSettings, ModelSettings
from mldeck.monitor.settings import MonitorSettings, estimated_metric
from mldeck.sections import Section as _Section

CONFIG_FILE = "mldeck.toml"
MAX_NAME_LENGTH = 100


class ProjectSettings(_Section):
    name: str = Field("mldeck", min_length=1, max_length=MAX_NAME_LENGTH)
    description: str = ""


class StoreSettings(_Section):
    # SQLAlchemy URL of the metadata store; empty means the SQLite file in .mldeck/.
    # The MLDECK_DB_URL environment variable takes precedence over this.
    url: str = ""


class ConsoleSettings(_Section):
    theme: str = "mldeck-dark"
    refresh_seconds: float = Field(1.0, ge=0.2, le=60)
    read_only: bool = False


class Settings(_Section):
    project: ProjectSettings = ProjectSettings()
    store: StoreSettings = StoreSettings()
    console: ConsoleSettings = ConsoleSettings()
    data: DataSettings = DataSettings()
    model: ModelSettings = ModelSettings()
    gates: GateSettings = GateSettings()
    jobs: JobSettings = JobSettings()
    monitor: MonitorSettings = MonitorSettings()

    @model_validator(mode="after")
    def _rules_watch_what_is_measured(self) -> Settings:
        """Gates and rules that could never be met or fire: a metric the model's task does not
        compute, drift that is turned off, an estimated_metric rule on another metric than the
        one a check estimates (the primary metric, or ROC AUC)."""
        task = self.model.task
        for table in ("min", "max", "max_regression"):
            for name in getattr(self.gates, table):
                if name not in METRICS[task]:
                    # every candidate failed it: "not computed on this holdout"
                    raise ValueError(
                        f"[gates] {table} names {name}, which a {task} model does not compute "
                        f"([model] task; its metrics: {', '.join(METRICS[task])})"
                    )
        estimated = estimated_metric(self.model.primary)
        score = self.monitor.columns.get("score")
        turned_off = {}
        if not self.monitor.multivariate:
            turned_off["multivariate_drift"] = "[monitor] multivariate = false"
        if score is not None and not score.monitor:
            turned_off["prediction_drift"] = "[monitor.columns.score] monitor = false"
        for number, rule in enumerate(self.monitor.alerts or [], 1):
            if rule.when in ("estimated_metric", "realized_metric") and task != "classification":
                raise ValueError(
                    f"the {_ordinal(number)} [[monitor.alerts]] ({rule.name!r}) watches "
                    f"{rule.metric}, which a {task} model does not compute ([model] task): it "
                    "would never fire"
                )
            if rule.when in turned_off:
                raise ValueError(
                    f"the {_ordinal(number)} [[monitor.alerts]] ({rule.name!r}) watches "
                    f"{rule.when.replace('_', ' ')}, which {turned_off[rule.when]} turns off: it "
                    "would never fire"
                )
            if rule.when == "estimated_metric" and rule.metric != estimated:
                raise ValueError(
                    f"the {_ordinal(number)} [[monitor.alerts]] ({rule.name!r}) watches estimated "
                    f"{rule.metric}, but a check estimates {estimated} ([model] primary_metric): "
                    "it would never fire; use realized_metric for other metrics"
                )
        return self


def _where(loc: list[Any]) -> str:
    """A place in mldeck.toml as it is written: ``[monitor]``, ``[data.columns.amount]``, or an
    array of tables' entry, ``the 2nd [[monitor.alerts]]`` (pydantic says ``monitor.alerts.1``)."""
    if not loc:
        return "top level"
    indexes = [i for i, part in enumerate(loc) if isinstance(part, int)]
    if not indexes:
        return "[" + ".".join(map(str, loc)) + "]"
    cut = indexes[-1]
    table = "[[" + ".".join(str(part) for part in loc[:cut]) + "]]"
    inner = ".".join(str(part) for part in loc[cut + 1 :])
    return f"the {_ordinal(loc[cut] + 1)} {table}" + (f", {inner}" if inner else "")


def _ordinal(number: int) -> str:
    suffix = (
        "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    )
    return f"{number}{suffix}"


def _inner(annotation: Any) -> Any:
    """The model a field holds: ``X | None`` is X, ``list[X]`` and ``dict[str, X]`` are X."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    while args:
        if hasattr(args[-1], "model_fields"):
            return args[-1]
        annotation = args[-1]
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return annotation


def _describe(error: dict[str, Any], model: type[BaseModel]) -> str:
    loc = list(error["loc"])
    where = _where(loc[:-1])
    key = str(loc[-1]) if loc else "?"
    if error["type"] == "extra_forbidden":
        section: Any = model
        for part in loc[:-1]:
            fields = getattr(section, "model_fields", None)
            if fields and part in fields:
                section = fields[part].annotation
            if not hasattr(section, "model_fields"):
                # An optional table, an array of tables, a table of tables such as
                # [data.columns.NAME]: the model of its entries.
                section = _inner(section)
        allowed = ", ".join(getattr(section, "model_fields", {}))
        return f"unknown key '{key}' in {where} (allowed: {allowed})"
    message = error["msg"]
    if error["type"] == "value_error":  # a validator's own sentence, without pydantic's label
        message = message.removeprefix("Value error, ")
    if not loc:  # a check across sections names its own place
        return message
    if len(loc) == 1 and error["type"] == "value_error":  # a check across a section's tables
        return message if message.startswith("[") else f"[{key}]: {message}"
    if isinstance(loc[-1], int):  # an entry's own check: "the 2nd [[monitor.alerts]]: ..."
        return f"{_where(loc)}: {message}"
    return f"'{key}' in {where}: {message}"


def parse_settings(text: str, source: str = CONFIG_FILE) -> Settings:
    """Parse TOML text into settings; raise ConfigError naming the first problem."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source} is not valid TOML: {exc}") from None
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        problems = [_describe(err, Settings) for err in exc.errors()]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConfigError(f"{source}: {problems[0]}{more}") from None


def load_settings(path: Path) -> Settings:
    """Read and validate ``mldeck.toml`` at *path*."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")  # a byte order mark, as some editors write, is not TOML
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text (byte {exc.start})") from None
    return parse_settings(text, str(path))


def _toml_string(value: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, except that TOML also refuses a raw DEL."""
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def default_config_text(name: str) -> str:
    """The commented ``mldeck.toml`` that ``mldeck init`` writes."""
    return (
        f"""\
# mldeck workspace configuration.
# Every key is optional; the values shown are the defaults. An unknown key is an error,
# so a typo never goes unnoticed.

[project]
# Shown in the console's header and in reports.
name = {_toml_string(name)}
description = ""

[store]
# SQLAlchemy URL of the metadata store. Empty: the SQLite file .mldeck/store.db in this
# workspace; a relative SQLite path (sqlite:///meta.db) is in this workspace's folder. The
# MLDECK_DB_URL environment variable overrides this value.
url = ""

[console]
# A theme name from the themes/ folder of this workspace or the built-in ones
# (mldeck-dark, mldeck-light, mldeck-contrast).
theme = "mldeck-dark"
# How often the console looks for changes made by other processes, in seconds.
refresh_seconds = 1.0
# true: the console shows but never changes state.
read_only = false

# Data expectations: write a starting set with 'mldeck data infer FILE --write'.
# [data]
# dataset = "default"

# What 'mldeck run train' trains, and the gates a candidate must pass to be promoted:
# [model]
# name = "churn"
# target = "churned"
# estimator = "sklearn.ensemble.HistGradientBoostingClassifier"
# params = {{max_iter = 200}}
# segment_column = "segment"
# newest_versions = 0         # train on the newest N accepted versions only (0: all)
#
# [gates]
# min = {{roc_auc = 0.75}}
# max_regression = {{roc_auc = 0.01}}
# max_fairness_gap = 0.15

# Drift, performance and alerts (see the README's monitoring section). When the reference or
# the batch has at most small_sample values, they are tested (KS, chi-square: drifted at
# p < 0.05); larger ones are measured (Wasserstein / reference std, Jensen-Shannon: drifted at
# 0.1). Without [[monitor.alerts]], dataset drift, multivariate drift, failed steps and the
# primary metric below its [gates] minimum raise alerts.
# [monitor]
# drift_share = 0.5
# small_sample = 1000
# min_labelled_rows = 30      # a realized metric on fewer labels (an estimated one on fewer rows) raises or clears no alert
# cost_per_cpu_hour = 0.0
# alert_command = ""          # gets each new alert as JSON on stdin
# alert_command_timeout = 30  # seconds before a command still running is stopped
# [monitor.columns.monthly_charges]
# method = "psi"              # ks | wasserstein | psi | chi2 | jensenshannon
# threshold = 0.2
# [[monitor.alerts]]
# name = "no data for a day"
# when = "freshness"          # dataset_drift | feature_drift | multivariate_drift |
# hours = 24                  # prediction_drift | estimated_metric | realized_metric |
# severity = "warning"        # freshness | failed_run
"""
        + JOBS_DEFAULT_CONFIG
    )
