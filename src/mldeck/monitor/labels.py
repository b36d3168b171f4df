"""Labels that arrive after their batch was scored: a file of ids and outcomes, joined by
``[data] id_column`` to the champion's stored predictions of every monitored batch that holds
those ids. Each batch that gains labels gets an ``evaluate`` run with the realized metrics, its
drift report's ``realized`` figures, and the realized-metric alert rules are evaluated.
"""

from __future__ import annotations

import dataclasses
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from sqlalchemy import insert, or_, select

from mldeck import formatting as fmt
from mldeck import provenance
from mldeck.data.readers import ReadError, open_source, unsupported_type
from mldeck.errors import MldeckError, NotYet
from mldeck.formatting import shown
from mldeck.monitor import alerts as alerting
from mldeck.monitor import performance
from mldeck.monitor.alerts import Raised
from mldeck.monitor.check import (
    batch_artifacts,
    open_version,
    read_parquet_artifact,
    realized_signals,
    stored_predictions,
)
from mldeck.monitor.settings import AlertRule
from mldeck.store.artifacts import put_stream
from mldeck.store.engine import Store
from mldeck.store.models import (
    USABLE_STATUSES,
    Alert,
    Artifact,
    Dataset,
    DatasetVersion,
    DriftReport,
    Metric,
    ModelVersion,
    Run,
    RunInput,
    RunKind,
    RunLog,
    RunStatus,
    RunTrigger,
    utcnow,
)
from mldeck.workspace import Workspace

LABELS_KIND = "labels"  # the artifact of a labels run: the ids it labelled in one batch


@dataclass
class Labelled:
    batch: str
    report_id: int
    run_id: int | None  # None when the file brought the batch no label it did not have
    rows: int  # labelled rows of the batch, with every label known so far
    new: int  # labels this file added
    realized: dict[str, float | None]

    def as_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "report_id": self.report_id,
            "run_id": self.run_id,
            "labelled_rows": self.rows,
            "new_labels": self.new,
            "realized": self.realized,
        }


@dataclass
class LabelOutcome:
    file: str
    rows: int
    matched: int
    batches: list[Labelled]
    alerts: list[Raised]
    unlabelled: int = 0  # rows of the file without an id or a label (skipped)
    # Ids in no monitored batch (not checked yet, or unknown): not kept; a few of them.
    unmatched: int = 0
    unmatched_examples: list[str] = field(default_factory=list)
    # Batches scored but not checked for drift yet that hold some of those ids.
    unchecked: list[str] = field(default_factory=list)
    # With --batch: other checked batches that hold some of those ids.
    elsewhere: list[str] = field(default_factory=list)
    hook_problems: list[str] = field(default_factory=list)  # one line per hook that failed


def id_text(expr: pl.Expr) -> pl.Expr:
    """An id as the text both sides are matched on: a whole number written with a fraction
    (``123000.0``: a spreadsheet's export, or an integer column with blanks read as floats) is
    the whole number, so it finds the batch's ``123000``; so is one written with leading zeros
    (``0123000``), which polars reads as the number when every id of its file is digits (so
    whether it matched depended on the file's other rows)."""
    return expr.cast(pl.String).str.strip_chars().str.replace(r"^(-?)0*(\d+)(?:\.0*)?$", "${1}${2}")


def late_labels(workspace: Workspace, store: Store, dataset_version_id: int) -> pl.DataFrame | None:
    """The labels recorded for a batch after it arrived: every labels run's share of it (``__id``
    and ``__label`` as text, hash verified); None when there are none."""
    found = batch_artifacts(store, dataset_version_id, RunKind.EVALUATE, LABELS_KIND)
    frames = [read_parquet_artifact(workspace, path, sha) for path, sha in found]
    if not frames:
        return None
    late = pl.concat(frames).with_columns(id_text(pl.col("__id")))
    return late.unique("__id", keep="first", maintain_order=True)


def realized_for(
    predictions: pl.DataFrame, own: pl.Series | None, late: pl.DataFrame | None,
    id_column: str | None, classes: list[Any],
) -> dict[str, float | None] | None:  # fmt: skip
    """The realized metrics of *predictions* on every row with a known label: the batch's own
    (*own*, row by row) and, where it has none, one recorded later (*late*, by id). None when no
    row is labelled or the model is not a binary classifier; only the counts when every label
    names no class of the model."""
    if len(classes) != 2:
        return None
    index = None
    unclassed = 0
    if own is not None and own.len() == predictions.height:
        # A label naming no class ('7' for classes 0 and 1) is as unknown as a missing one; how
        # many there were is said with the figures.
        index = performance.class_index(own, classes)
        unclassed = int((own.is_not_null() & index.is_null()).sum())
    if late is not None and late.height and id_column and id_column in predictions.columns:
        ids = predictions.select(id_text(pl.col(id_column)).alias("__id"))
        later = ids.join(late, on="__id", how="left", maintain_order="left").get_column("__label")
        later = performance.class_index(later, classes)
        if index is not None and unclassed:  # own labels naming no class, labelled since
            unclassed -= int((own.is_not_null() & index.is_null() & later.is_not_null()).sum())
        index = later if index is None else index.fill_null(later)
    if index is None:
        return None
    known = index.is_not_null().to_numpy()
    if not known.any():
        # Labels that all name no class: no figure, but said (they were left out in silence).
        return {"labelled_rows": 0, "unclassed_labels": unclassed} if unclassed else None
    y = (index == 1).fill_null(False).to_numpy()[known]
    predicted = performance.class_index(predictions.get_column("prediction"), classes) == 1
    predicted = predicted.fill_null(False).to_numpy()[known]
    scores = predictions.get_column("score").to_numpy()[known]
    scores = scores if np.isfinite(scores).all() else None
    realized: dict[str, float | None] = {
        k: _finite(v) for k, v in performance.realized_metrics(y, predicted, scores).items()
    }
    realized["labelled_rows"] = int(known.sum())
    if unclassed:
        realized["unclassed_labels"] = unclassed
    return realized


def _read_labels(
    workspace: Workspace, path: Path, id_column: str, target: str
) -> tuple[pl.DataFrame, int]:
    """The file's labels (``__id``, ``__label``) and how many rows had no id or no label."""
    try:
        source = open_source(path, separator=workspace.settings.data.csv_separator)
    except ReadError as exc:
        raise MldeckError(f"cannot read {path}: {exc}") from None
    missing = [c for c in (id_column, target) if c not in source.columns]
    if missing:
        raise MldeckError(
            f"{shown(path.name)} lacks {' and '.join(repr(c) for c in missing)}: a label file has the "
            f"id column ({id_column!r}) and the target ({target!r})"
        )
    try:
        read = source.frame.select(
            id_text(pl.col(id_column)).alias("__id"),
            pl.col(target).cast(pl.String).str.strip_chars().replace("", None).alias("__label"),
        ).collect()
        unlabelled = read.height - read.drop_nulls().height
        frame = (
            read.lazy()
            .drop_nulls()
            # One label named twice ('1' and '1.0') is one label: numbers compare as numbers.
            .with_columns(pl.coalesce(pl.col("__label").cast(pl.Float64, strict=False)
                                      .cast(pl.String), pl.col("__label")).alias("__key"))
            .unique(["__id", "__key"], keep="first", maintain_order=True)
            .drop("__key")
            .collect()
        )  # fmt: skip
    except pl.exceptions.PolarsError as exc:
        raise MldeckError(f"cannot read {shown(str(path))}: {source.why(exc)}") from None
    conflicts = frame.filter(pl.col("__id").is_duplicated()).sort("__id", "__label")
    if conflicts.height:
        ids = conflicts.get_column("__id").unique(maintain_order=True)
        shown_ids = ", ".join(repr(i) for i in ids.head(5).to_list())
        raise MldeckError(
            f"{shown(path.name)} gives {ids.len()} id(s) more than one label ({shown_ids}"
            f"{', ...' if ids.len() > 5 else ''}): which is right is not for mldeck to guess"
        )
    return frame, unlabelled


def _refuse_unknown(path: Path, labels: pl.DataFrame, classes: list[Any]) -> None:
    """Refuse a label file whose labels name none of the model's classes ('7', '1x')."""
    index = performance.class_index(labels.get_column("__label"), classes)
    unknown = labels.get_column("__label").filter(index.is_null()).unique(maintain_order=True)
    if unknown.len():
        examples = ", ".join(repr(v) for v in unknown.head(5).to_list())
        raise MldeckError(
            f"{shown(path.name)}: {unknown.len()} label value(s) name no class of the model"
            f" ({', '.join(str(c) for c in classes)}): {examples}"
        )


def record_labels(
    workspace: Workspace,
    store: Store,
    path: Path,
    *,
    trigger: str = RunTrigger.MANUAL,
    batch: str | None = None,
) -> LabelOutcome:
    """Join the labels in *path* to every monitored batch's predictions (or *batch*'s alone: a
    dataset version reference); record the labels each batch did not have yet, and its realized
    performance on all of its labels so far.

    Labels add up: a batch labelled by several files (or partly by its own column) is judged on
    all of them. A label that contradicts one the batch already has refuses the whole file, as
    two labels for one id within a file do: which is right is not for mldeck to guess. Nor is
    which prediction a label is of when its id is in several monitored batches (a customer
    scored every week): the file is refused unless *batch* names the one it labels."""
    id_column = workspace.settings.data.id_column
    if not id_column:
        raise MldeckError("labels are joined by id: set [data] id_column in mldeck.toml")
    workspace.refuse_state_file(path)
    if not path.exists():
        raise MldeckError(f"cannot read {path}: no such file")
    if (why := unsupported_type(path)) is not None:  # as ingest and score say it
        raise MldeckError(f"cannot read {shown(path.name)}: {why}")
    with store.read() as session:
        reports = session.execute(
            select(DriftReport, ModelVersion, DatasetVersion, Dataset.name)
            .join(ModelVersion, ModelVersion.id == DriftReport.model_version_id)
            .join(DatasetVersion, DatasetVersion.id == DriftReport.dataset_version_id)
            .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
            .order_by(DriftReport.id.desc())
        ).all()
        session.expunge_all()
    latest: dict[int, tuple] = {}
    for report, version, batch_version, name in reports:
        latest.setdefault(batch_version.id, (report, version, batch_version, name))
    if not latest:
        raise NotYet(
            "no batch has been checked for drift with a model yet, so no label can be kept: "
            "'mldeck drift check BATCH', then pass the labels again"
        )
    checked = dict(latest)  # every batch checked, whichever this file is said to label
    if batch is not None:
        from mldeck.store.queries import resolve_version

        chosen = resolve_version(store, batch)
        with store.read() as session:
            is_reference = session.execute(
                select(Dataset.id).where(Dataset.reference_version_id == chosen)
            ).first()
        if is_reference is not None:  # it said to check it, which 'drift check' refuses
            raise MldeckError(f"{batch} is a reference, which takes no labels: name the batch "
                              "the file labels")  # fmt: skip
        if chosen not in latest:  # a warning, as for the ids of batches not checked yet
            raise NotYet(
                f"{batch} has not been checked for drift with a model yet: run "
                f"'mldeck drift check {batch}', then pass the labels again"
            )
        latest = {chosen: latest[chosen]}
    targets = {(v.schema_ or {}).get("target") for _, v, _, _ in latest.values()} - {None}
    target = workspace.settings.model.target or (targets.pop() if len(targets) == 1 else None)
    if not target:
        raise MldeckError("which column holds the labels? set [model] target in mldeck.toml")
    labels, unlabelled = _read_labels(workspace, path, id_column, target)
    if not labels.height:
        raise MldeckError(
            f"{shown(path.name)} has no labels: "
            + (f"none of its {fmt.plural(unlabelled, 'row')} has both an id and a label"
               if unlabelled else "it has no rows")
        )  # fmt: skip
    for classes in {
        tuple((v.schema_ or {}).get("classes") or ()) for _, v, _, _ in latest.values()
    }:
        if len(classes) == 2:
            _refuse_unknown(path, labels, list(classes))
    # First every batch's share of the file, and any contradiction (nothing written yet) ...
    shares: list[_Share] = []
    conflicts: list[str] = []
    matched_ids: set[str] = set()
    held: list[pl.DataFrame] = []  # each batch's matched ids, with the batch
    not_binary: list[str] = []  # batches whose model has no two classes to judge labels by
    newest_holder = 0  # the newest checked batch holding some of the ids
    for report, version, batch_version, name in sorted(latest.values(), key=lambda r: r[0].id):
        predictions = stored_predictions(
            workspace, store, report.dataset_version_id, report.model_version_id
        )
        if predictions is None or id_column not in predictions.columns:
            continue
        ids = predictions.select(id_text(pl.col(id_column)).alias("__id"))
        mine = labels.join(ids.unique(), on="__id", how="semi")
        if mine.height == 0:
            continue
        label = f"{name}:v{batch_version.version}"
        held.append(mine.select("__id", pl.lit(label).alias("__batch")))
        newest_holder = max(newest_holder, batch_version.id)
        matched_ids.update(mine.get_column("__id").to_list())
        classes = (version.schema_ or {}).get("classes") or []
        if len(classes) != 2:
            not_binary.append(f"{label} (its model is not a binary classifier)")
            continue
        own = _own_labels(workspace, batch_version, label, target, predictions.height)
        late = late_labels(workspace, store, batch_version.id)
        # A row's own label naming no class is no label: a later one for it is new.
        known = [f for f in (late, _by_id(ids, own, classes)) if f is not None and f.height]
        fresh = mine
        for earlier in known:
            clash = _contradictions(mine, earlier, classes)
            if clash:
                conflicts.append(f"{label} ({', '.join(repr(i) for i in clash[:5])}"
                                 f"{', ...' if len(clash) > 5 else ''})")  # fmt: skip
            fresh = fresh.join(earlier, on="__id", how="anti")
        shares.append(_Share(report, batch_version, label, classes, predictions, own, late, fresh))
    shared = pl.concat(held).filter(pl.col("__id").is_duplicated()) if held else pl.DataFrame()
    if shared.height:
        ids = shared.get_column("__id").unique(maintain_order=True)
        batches = shared.get_column("__batch").unique(maintain_order=True).to_list()
        examples = ", ".join(repr(i) for i in ids.head(5).to_list())
        raise MldeckError(
            f"{fmt.plural(ids.len(), 'id')} of {shown(path.name)} ({examples}"
            f"{', ...' if ids.len() > 5 else ''}) {'is' if ids.len() == 1 else 'are'} in "
            f"several monitored batches ({', '.join(batches)}): a label is of one prediction; "
            f"say which batch the file labels with --batch (e.g. --batch {batches[-1]})"
        )
    if conflicts:
        raise MldeckError(
            f"{shown(path.name)} contradicts labels already recorded for {'; '.join(conflicts)}: "
            "which is right is not for mldeck to guess"
        )
    if matched_ids and not shares and not_binary:  # nothing could be kept: not a success
        raise MldeckError(
            f"{shown(path.name)}'s labels are of {', '.join(not_binary)}: realized performance "
            "is measured for binary classifiers only; no label was kept"
        )
    if matched_ids and batch is None:
        # A newer batch, not checked yet, holding the same ids (next week's scoring of a
        # customer): the labels are of one of them, and were all given to the checked one. (An
        # older batch left unchecked, the reference, a training set: no doubt to raise.)
        pending = _not_checked(workspace, store,
                               labels.filter(pl.col("__id").is_in(list(matched_ids))),
                               id_column, set(checked), after=newest_holder)  # fmt: skip
        if pending:
            holders = held and pl.concat(held).get_column("__batch").unique(maintain_order=True)
            raise MldeckError(
                f"ids of {shown(path.name)} are in {', '.join(holders)} and in "
                f"{', '.join(pending)}, not checked for drift yet: a label is of one prediction; "
                f"say which batch the file labels with --batch (a batch takes labels once "
                f"'mldeck drift check' has run on it)"
            )
    unmatched = labels.filter(~pl.col("__id").is_in(list(matched_ids)))
    if batch is not None and not matched_ids:
        # The ids are in another checked batch than the one named: said (it read "not checked
        # for drift yet" of a batch that was).
        others = _holders(workspace, store, labels, id_column,
                          [entry for key, entry in checked.items() if key not in latest])  # fmt: skip
        if others:
            raise MldeckError(
                f"none of the {labels.height} ids in {shown(path.name)} is in {batch}: "
                f"{', '.join(others)} {'holds' if len(others) == 1 else 'hold'} them "
                f"(--batch {others[0]})"
            )
    # Only when some ids matched no monitored batch: which scored batch holds them, if any (and
    # with --batch, which other checked batch: they were said to be in no monitored batch).
    unchecked = (_not_checked(workspace, store, unmatched, id_column, set(checked))
                 if unmatched.height else [])  # fmt: skip
    elsewhere = (_holders(workspace, store, unmatched, id_column,
                          [entry for key, entry in checked.items() if key not in latest])
                 if batch is not None and unmatched.height else [])  # fmt: skip
    if labels.height and not matched_ids:
        if unchecked:
            named = ", ".join(unchecked)
            raise NotYet(
                f"none of the {labels.height} ids in {shown(path.name)} is in a monitored batch: "
                f"{named} {'holds' if len(unchecked) == 1 else 'hold'} them but "
                f"{'was' if len(unchecked) == 1 else 'were'} not checked for drift yet; "
                f"run 'mldeck drift check {unchecked[0]}', then pass this file again"
            )
        raise MldeckError(
            f"none of the {labels.height} ids in {shown(path.name)} is in a monitored batch "
            f"(ids are matched as text on [data] id_column {id_column!r}; see 'mldeck drift list')"
        )
    # ... then each batch's new labels, with its realized performance on all it has.
    batches: list[Labelled] = []
    raised: list[Raised] = []
    rules = [r for r in alerting.default_rules(workspace.settings) if r.when == "realized_metric"]
    for share in shares:
        late = pl.concat([share.late, share.fresh]) if share.late is not None else share.fresh
        realized = realized_for(share.predictions, share.own, late, id_column, share.classes)
        if realized is None or not realized["labelled_rows"]:
            continue
        rows = int(realized.pop("labelled_rows"))
        if not share.fresh.height:  # every label of the file was known: nothing to record
            batches.append(Labelled(share.batch, share.report.id, None, rows, 0, realized))
            continue
        # The labels, the realized metrics and the alerts they raise or clear: one transaction.
        run_id, batch_raised, new = _record(workspace, store, share, path, realized, rows,
                                            trigger, rules)  # fmt: skip
        batches.append(Labelled(share.batch, share.report.id, run_id, rows, new, realized))
        raised.extend(batch_raised)
    if raised:
        # What the file leaves open: a newer batch's labels may have cleared what an older
        # batch's raised in the same file (said as raised, its hook paged for a closed alert).
        with store.read() as session:
            still = set(session.execute(
                select(Alert.id).where(Alert.id.in_([r.alert_id for r in raised]),
                                       Alert.status.in_(alerting.OPEN_STATES))
            ).scalars())  # fmt: skip
        opened = {r.alert_id for r in raised if r.new}
        last = {r.alert_id: r for r in raised if r.alert_id in still}  # one line per alert
        raised = [dataclasses.replace(r, new=r.alert_id in opened) for r in last.values()]
    problems = alerting.run_hooks(raised, workspace.settings.monitor.alert_command,
                                  workspace.settings.monitor.alert_command_timeout,
                                  workspace.root)  # fmt: skip
    if problems:  # kept with the labels' runs, as a check keeps its own
        with store.write() as session:
            for item in batches:
                if item.run_id is not None:
                    session.add_all(RunLog(run_id=item.run_id, level="warning", message=problem)
                                    for problem in problems)  # fmt: skip
    left = labels.filter(~pl.col("__id").is_in(list(matched_ids))).get_column("__id")
    return LabelOutcome(shown(str(path)), labels.height, len(matched_ids), batches, raised,
                        unlabelled, left.len(), left.head(5).to_list(),
                        unchecked if left.len() else [], elsewhere, problems)  # fmt: skip


# How many of the newest batches never scored are looked into for a labels file's unmatched ids.
UNSCORED_LOOKED_AT = 20


def _not_checked(
    workspace: Workspace, store: Store, labels: pl.DataFrame, id_column: str, checked: set[int],
    after: int = 0,
) -> list[str]:  # fmt: skip
    """The batches never checked for drift (scored or not) that hold some of *labels*' ids:
    their labels cannot be kept yet (a batch takes labels once its check stored its report).
    Only versions stored after the version id *after*; a dataset's reference is no batch."""
    not_reference = or_(Dataset.reference_version_id.is_(None),
                        Dataset.reference_version_id != DatasetVersion.id)  # fmt: skip
    with store.read() as session:
        rows = session.execute(
            select(DatasetVersion.id, Dataset.name, DatasetVersion.version, Artifact.path,
                   Artifact.sha256)
            .join(RunInput, RunInput.dataset_version_id == DatasetVersion.id)
            .join(Run, Run.id == RunInput.run_id)
            .join(Artifact, Artifact.run_id == Run.id)
            .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
            .where(Run.kind == RunKind.SCORE, Run.status == RunStatus.SUCCEEDED,
                   Artifact.kind == "predictions", DatasetVersion.id > after,
                   DatasetVersion.status.in_(USABLE_STATUSES), not_reference)
            .order_by(DatasetVersion.id, Run.id.desc())
        ).all()  # fmt: skip
    found: list[str] = []
    for version_id, name, number, path, sha in rows:
        label = f"{name}:v{number}"
        if version_id in checked or label in found:
            continue
        try:
            predictions = read_parquet_artifact(workspace, path, sha)
        except (MldeckError, OSError, pl.exceptions.PolarsError):
            continue  # a damaged artifact: the check of that batch says so
        if id_column in predictions.columns:
            ids = predictions.select(id_text(pl.col(id_column)).alias("__id")).unique()
            if labels.join(ids, on="__id", how="semi").height:
                found.append(label)
    # Batches not even scored yet ('drift check' scores them first): the newest ones of the
    # datasets monitored (a training set sharing the ids is no batch to check), whose files
    # hold the ids (a reference is no batch either).
    monitored = (select(DatasetVersion.dataset_id)
                 .join(DriftReport, DriftReport.dataset_version_id == DatasetVersion.id))  # fmt: skip
    with store.read() as session:
        rows = session.execute(
            select(DatasetVersion, Dataset.name)
            .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
            .where(DatasetVersion.status.in_(USABLE_STATUSES),
                   DatasetVersion.id.not_in(checked),
                   DatasetVersion.id > after,
                   Dataset.id.in_(monitored),
                   not_reference)
            .order_by(DatasetVersion.id.desc())
            .limit(UNSCORED_LOOKED_AT)
        ).all()  # fmt: skip
    for version, name in reversed(rows):
        label = f"{name}:v{version.version}"
        if label in found:
            continue
        try:
            frame = open_version(workspace, version, label)
            if id_column not in frame.collect_schema():
                continue
            ids = frame.select(id_text(pl.col(id_column)).alias("__id")).unique().collect()
        except (MldeckError, OSError, pl.exceptions.PolarsError):
            continue  # a damaged or missing file: its check says so
        if labels.join(ids, on="__id", how="semi").height:
            found.append(label)
    return found


@dataclass
class _Share:
    """What one labels file brings one monitored batch."""

    report: DriftReport
    version: DatasetVersion
    batch: str
    classes: list[Any]
    predictions: pl.DataFrame
    own: pl.Series | None  # the batch's own label column, row by row
    late: pl.DataFrame | None  # labels recorded before this file
    fresh: pl.DataFrame  # this file's labels the batch did not have


def _own_labels(
    workspace: Workspace, version: DatasetVersion, batch: str, target: str, rows: int
) -> pl.Series | None:
    """The batch's own label column (None when it arrived without one)."""
    frame = open_version(workspace, version, batch)
    if target not in frame.collect_schema():
        return None
    own = frame.select(target).collect().to_series()
    return own if own.len() == rows and own.null_count() < rows else None


def _by_id(ids: pl.DataFrame, own: pl.Series | None, classes: list[Any]) -> pl.DataFrame | None:
    """A batch's own labels by id, those naming a class of the model."""
    if own is None:
        return None
    named = performance.class_index(own, classes).is_not_null()
    frame = ids.with_columns(own.cast(pl.String).alias("__label")).filter(named).drop_nulls()
    return frame.unique("__id", keep="first")


def _holders(
    workspace: Workspace, store: Store, labels: pl.DataFrame, id_column: str, entries: list[tuple]
) -> list[str]:
    """Which of the checked batches *entries* (as ``record_labels`` lists them) hold some of
    *labels*' ids."""
    found = []
    for report, _version, batch_version, name in sorted(entries, key=lambda e: e[0].id):
        predictions = stored_predictions(
            workspace, store, report.dataset_version_id, report.model_version_id
        )
        if predictions is None or id_column not in predictions.columns:
            continue
        ids = predictions.select(id_text(pl.col(id_column)).alias("__id")).unique()
        if labels.join(ids, on="__id", how="semi").height:
            found.append(f"{name}:v{batch_version.version}")
    return found


def _contradictions(new: pl.DataFrame, known: pl.DataFrame, classes: list[Any]) -> list[str]:
    """The ids whose label in *new* names another class than in *known*."""
    both = new.join(known, on="__id", how="inner", suffix="__known", maintain_order="left")
    if not both.height:
        return []
    mine = performance.class_index(both.get_column("__label"), classes)
    theirs = performance.class_index(both.get_column("__label__known"), classes)
    differ = (mine != theirs).fill_null(False)
    return both.get_column("__id").filter(differ).to_list()


def _finite(value: float) -> float | None:
    return value if value is not None and np.isfinite(value) else None


def _record(
    workspace: Workspace, store: Store, share: _Share, path: Path,
    realized: dict[str, float | None], rows: int, trigger: str, rules: list[AlertRule],
) -> tuple[int | None, list[Raised], int]:  # fmt: skip
    """Record *share*'s new labels; (run id, alerts, how many were new). In the write turn, the
    labels recorded since *share* was read (the same file passed by two processes at once)
    are known: only the rest is new, and none new records nothing."""
    report_id, version_id, batch = share.report.id, share.version.id, share.batch
    now = utcnow()
    pid = os.getpid()
    with store.write() as session:
        since = late_labels(workspace, store, version_id)  # committed before this write turn
        fresh = share.fresh if since is None else share.fresh.join(since, on="__id", how="anti")
        if not fresh.height:
            return None, [], 0
        buffer = io.BytesIO()
        fresh.write_parquet(buffer)
        buffer.seek(0)
        sha, stored, size = put_stream(workspace.artifacts_dir, buffer, suffix=".parquet")
        run = Run(
            name=f"labels for {batch}", kind=RunKind.EVALUATE, trigger=trigger,
            status=RunStatus.SUCCEEDED, created_at=now, started_at=now, ended_at=now,
            progress=1.0, params={"labels": shown(str(path)), "report_id": report_id},
            tags={"dataset": batch}, user=provenance.current_user(),
            host=provenance.hostname(), pid=pid,
            pid_started_at=provenance.process_start_time(pid),
            progress_message=f"{fresh.height} new labels; {rows} labelled rows",
        )  # fmt: skip
        session.add(run)
        session.flush()
        session.add(RunInput(run_id=run.id, dataset_version_id=version_id, role="input"))
        session.add(Artifact(run_id=run.id, name=f"labels-{batch}-{path.name}", kind=LABELS_KIND,
                             sha256=sha, size_bytes=size,
                             path=str(stored.relative_to(workspace.root))))  # fmt: skip
        points = [{"run_id": run.id, "key": f"realized_{k}", "value": v, "step": 0, "ts": now}
                  for k, v in realized.items() if v is not None and k != "unclassed_labels"]  # fmt: skip
        points += [{"run_id": run.id, "key": key, "value": float(value), "step": 0, "ts": now}
                   for key, value in (("labelled_rows", rows), ("new_labels", fresh.height))]  # fmt: skip
        session.execute(insert(Metric), points)
        report = session.get(DriftReport, report_id)
        report.summary = {
            **report.summary,
            "realized": {**realized, "labelled_rows": rows, "labels_file": shown(path.name),
                         "labels_run_id": run.id, "new_labels": fresh.height},
        }  # fmt: skip
        session.add(report)
        signals = realized_signals(rules, batch, report.dataset_version_id,
                                   {**realized, "labelled_rows": rows},
                                   workspace.settings.monitor.min_labelled_rows,
                                   dataset=workspace.settings.data.dataset, run_id=run.id)  # fmt: skip
        # Counted with the report they change (its check's run); each names the labels run.
        return run.id, alerting.apply_in(session, signals, run_id=report.run_id), fresh.height
