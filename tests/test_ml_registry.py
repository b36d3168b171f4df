"""The model registry: approval, promotion, gates, rollback, archive, concurrency, the CLI.

Versions are real: a small seeded scikit-learn pipeline saved with skops into the content-addressed
artifact store and registered with ``register_version``, on a real store.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import queue as queue_module
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import polars as pl
import pytest
from sqlalchemy import select

from mldeck import audit
from mldeck.errors import MldeckError, NotFound
from mldeck.ml import registry
from mldeck.store.artifacts import put_stream
from mldeck.store.engine import Store, open_store
from mldeck.store.models import (
    Alias,
    Approval,
    Artifact,
    AuditEvent,
    GateResult,
    ModelVersion,
    Run,
    RunInput,
    RunKind,
    RunStatus,
)
from mldeck.store.queries import list_model_versions, model_version_detail
from mldeck.workspace import Workspace

from .test_cli import assert_one_line_error

FEATURES = ("tenure", "charges", "plan")
DATA_CONFIG = '\n[data]\ndataset = "churn"\nid_column = "customer_id"\n'


# -- helpers shared with test_audit.py and test_ml_scoring.py -----------------------------------


def churn_frame(rows: int, seed: int, start_id: int = 1000) -> pl.DataFrame:
    """A small churn-like batch: ids, two numbers, a category and the label."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(0, 72, rows)
    charges = rng.normal(60, 20, rows).round(2)
    plan = rng.choice(["basic", "plus", "premium"], rows)
    risk = -0.06 * tenure + 0.03 * (charges - 60) + (plan == "basic") * 0.8
    churned = (risk + rng.normal(0, 0.7, rows) > -1.2).astype(int)
    return pl.DataFrame(
        {
            "customer_id": np.arange(start_id, start_id + rows),
            "tenure": tenure,
            "charges": charges,
            "plan": plan,
            "churned": churned,
        }
    )


@dataclass(frozen=True)
class Fitted:
    """A fitted model's skops bytes and the columns it was fitted on."""

    content: bytes
    features: tuple[str, ...]


def fit_model(frame: pl.DataFrame, *, c: float = 1.0, features=FEATURES) -> Fitted:
    """A fitted sklearn Pipeline (scaler + one-hot + logistic regression), saved with skops."""
    import skops.io as sio
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numbers = [f for f in features if f != "plan"]
    steps = [("num", StandardScaler(), numbers)]
    if "plan" in features:
        steps.append(("cat", OneHotEncoder(handle_unknown="ignore"), ["plan"]))
    model = Pipeline(
        [("prep", ColumnTransformer(steps)), ("clf", LogisticRegression(C=c, max_iter=500))]
    )
    model.fit(frame.select(list(features)), frame["churned"].to_numpy())
    return Fitted(sio.dumps(model), tuple(features))


@pytest.fixture(scope="session")
def model_bytes() -> dict[str, Fitted]:
    """Three different fitted models (fitted once per test process)."""
    train = churn_frame(400, seed=1)
    return {
        "a": fit_model(train, c=1.0),
        "b": fit_model(train, c=0.001, features=("tenure", "plan")),
        "c": fit_model(train, c=0.1),
    }


def configure(ws: Workspace, extra: str = DATA_CONFIG) -> Workspace:
    from mldeck.workspace import load_workspace

    with open(ws.config_path, "a", encoding="utf-8") as fh:
        fh.write(extra)
    return load_workspace(ws.root)


def add_version(
    ws: Workspace,
    store: Store,
    fitted: Fitted,
    *,
    name: str = "churn",
    metrics: dict[str, Any] | None = None,
    gates: tuple[tuple[str, bool], ...] = (),
    schema: dict[str, Any] | None = None,
    code_version: dict[str, Any] | None = None,
    inputs: tuple[int, ...] = (),
) -> ModelVersion:
    """Register a version like training does: a run, its model artifact (skops bytes stored
    content-addressed, with the model-file record loading needs), the version, its gates."""
    import skops.io as sio

    from mldeck.ml.model_files import SavedModel

    sha, stored, size = put_stream(ws.artifacts_dir, io.BytesIO(fitted.content), suffix=".skops")
    relative = str(stored.relative_to(ws.root))
    trusted = sorted(sio.get_untrusted_types(data=fitted.content))
    dtypes = {"tenure": "Int64", "charges": "Float64", "plan": "String"}
    full_schema = {
        "input": "polars.DataFrame",
        "features": list(fitted.features),
        "dtypes": {f: dtypes[f] for f in fitted.features},
        **(schema or {}),
        "model_file": SavedModel(sha, relative, size, trusted).record(),
    }
    with store.write() as session:
        run = Run(name=f"train {name}", kind=RunKind.TRAIN, status=RunStatus.SUCCEEDED)
        session.add(run)
        session.flush()
        for dataset_version_id in inputs:
            session.add(
                RunInput(run_id=run.id, dataset_version_id=dataset_version_id, role="train")
            )
        artifact = Artifact(run_id=run.id, name="model.skops", kind="model", path=relative,
                            sha256=sha, size_bytes=size)  # fmt: skip
        session.add(artifact)
        session.flush()
        version = registry.register_version(
            session,
            name,
            run_id=run.id,
            artifact_id=artifact.id,
            metrics=metrics if metrics is not None else {"auc": 0.8},
            schema=full_schema,
            code_version=code_version if code_version is not None else {"git_commit": "a" * 40},
        )
        for gate, passed in gates:
            session.add(GateResult(model_version_id=version.id, run_id=run.id, gate=gate,
                                   metric="auc", threshold=0.75, value=0.8 if passed else 0.6,
                                   passed=passed))  # fmt: skip
        return version


def champion_rows(store: Store) -> list[Alias]:
    with store.read() as session:
        return list(session.execute(select(Alias).where(Alias.name == "champion")).scalars())


def events(store: Store, action: str | None = None) -> list[AuditEvent]:
    with store.read() as session:
        statement = select(AuditEvent).order_by(AuditEvent.id)
        if action:
            statement = statement.where(AuditEvent.action == action)
        return list(session.execute(statement).scalars())


def champion_version(store: Store, model: str = "churn") -> int:
    return registry.resolve(store, f"{model}@champion").version


# -- approval and promotion --------------------------------------------------------------------


def test_register_approve_promote_sets_the_champion_and_the_trail(workspace, store, model_bytes):
    v1 = add_version(workspace, store, model_bytes["a"])
    assert v1.version == 1 and v1.status == registry.CANDIDATE
    with pytest.raises(NotFound, match="no 'champion' alias"):
        registry.resolve(store, "churn@champion")

    approved = registry.approve(store, "churn:1", reason="holdout AUC 0.80", user="alice")
    assert approved.actor == "alice" and "approved by alice" in approved.describe()
    promoted = registry.promote(store, "churn:1", reason="first model")

    assert champion_version(store) == 1
    assert len(champion_rows(store)) == 1
    with store.read() as session:
        version = session.get(ModelVersion, v1.id)
        approval = session.execute(select(Approval)).scalar_one()
    assert version.status == registry.APPROVED
    assert (approval.user, approval.reason, approval.automatic) == (
        "alice",
        "holdout AUC 0.80",
        False,
    )
    assert approval.created_at is not None
    actions = [e.action for e in events(store)]
    assert actions == ["model.create", "model_version.register", "model_version.approve",
                       "model_version.promote"]  # fmt: skip
    promote_event = events(store, "model_version.promote")[0]
    assert promote_event.id in promoted.event_ids
    assert promote_event.details["alias"] == "champion"
    assert promote_event.details["reason"] == "first model"
    assert promote_event.details["forced"] is False
    assert promote_event.entity_type == "model_version" and promote_event.entity_id == str(v1.id)
    assert audit.verify(store).ok


def test_promotion_to_champion_needs_an_approval(workspace, store, model_bytes):
    add_version(workspace, store, model_bytes["a"])
    with pytest.raises(MldeckError, match=r"churn:1 is not approved.*models approve churn:1"):
        registry.promote(store, "churn:1")
    assert champion_rows(store) == []
    assert events(store, "model_version.promote") == []


def test_the_auto_approve_policy_records_an_automatic_approval(workspace, store, model_bytes):
    add_version(workspace, store, model_bytes["a"])
    change = registry.promote(store, "churn:1", auto_approve=True, user="scheduler")
    assert change.automatic_approval
    with store.read() as session:
        approval = session.execute(select(Approval)).scalar_one()
    assert approval.automatic and approval.decision == "approved" and approval.user == "scheduler"
    approve_event = events(store, "model_version.approve")[0]
    assert approve_event.details["automatic"] is True
    assert champion_version(store) == 1


def test_the_auto_approve_policy_is_read_defensively():
    assert registry.auto_approve_policy(SimpleNamespace()) is False
    assert registry.auto_approve_policy(SimpleNamespace(gates=SimpleNamespace())) is False
    policy = SimpleNamespace(gates=SimpleNamespace(auto_approve=True))
    assert registry.auto_approve_policy(policy) is True


def test_a_rejected_version_is_refused_even_with_auto_approve(workspace, store, model_bytes):
    add_version(workspace, store, model_bytes["a"])
    registry.approve(store, "churn:1", reason="leaks the label", reject=True)
    with pytest.raises(MldeckError, match="was rejected"):
        registry.promote(store, "churn:1", auto_approve=True)
    with pytest.raises(MldeckError, match="already rejected"):
        registry.approve(store, "churn:1", reason="again", reject=True)
    with pytest.raises(MldeckError, match="needs a reason"):
        registry.approve(store, "churn:1", reason="  ")


def test_a_failed_gate_refuses_promotion_naming_the_gate(workspace, store, model_bytes):
    add_version(workspace, store, model_bytes["a"],
                gates=(("min_auc", False), ("no_regression", True), ("fairness_gap", False)))  # fmt: skip
    registry.approve(store, "churn:1", reason="looks fine")
    with pytest.raises(MldeckError) as refused:
        registry.promote(store, "churn:1")
    message = str(refused.value)
    assert "min_auc (auc 0.6 vs 0.75)" in message and "fairness_gap" in message
    assert "no_regression" not in message and "--force" in message
    assert champion_rows(store) == []
    with pytest.raises(MldeckError, match="forced promotion needs a reason"):
        registry.promote(store, "churn:1", force=True)

    change = registry.promote(store, "churn:1", force=True, reason="incident 42: ship anyway")
    assert change.forced and "FORCED" in change.describe()
    event = events(store, "model_version.promote")[-1]
    assert event.details["forced"] is True
    assert event.details["failed_gates"] == [
        "min_auc (auc 0.6 vs 0.75)",
        "fairness_gap (auc 0.6 vs 0.75)",
    ]
    assert event.details["reason"] == "incident 42: ship anyway"
    assert champion_version(store) == 1
    assert audit.verify(store).ok


def test_every_failed_metric_of_one_gate_is_named(workspace, store, model_bytes):
    """[gates] min on roc_auc, accuracy and f1, all three failed: only roc_auc's was said, in
    the error, the promote output and the forced promotion's audit record."""
    version = add_version(workspace, store, model_bytes["a"])
    with store.write() as session:
        for metric in ("roc_auc", "accuracy", "f1"):
            session.add(GateResult(model_version_id=version.id, run_id=version.run_id, gate="min",
                                   metric=metric, threshold=0.99, value=0.8, passed=False))  # fmt: skip
    registry.approve(store, "churn:1", reason="looks fine")
    registry.promote(store, "churn:1", force=True, reason="ship it")
    assert events(store, "model_version.promote")[-1].details["failed_gates"] == [
        "min (roc_auc 0.8 vs 0.99)", "min (accuracy 0.8 vs 0.99)", "min (f1 0.8 vs 0.99)"
    ]  # fmt: skip


def test_a_rejection_reason_is_quoted_as_printable_text(workspace, store, model_bytes, cli):
    """The reason went raw into the refusal: an escape cleared the screen, a new line split it."""
    add_version(workspace, store, model_bytes["a"])
    registry.approve(store, "churn:1", reason="bad \x1b[2J\x1b[31mRED\nsecond line", reject=True)
    with pytest.raises(MldeckError) as refused:
        registry.promote(store, "churn:1")
    assert "\x1b" not in str(refused.value) and "\n" not in str(refused.value)
    done = cli("models", "promote", "churn:1", cwd=workspace.root)
    assert done.returncode == 2 and "\x1b" not in done.stderr
    assert "was rejected by" in done.stderr and done.stderr.count("\n") == 1


def test_a_failed_regression_gate_is_named_with_its_own_figures(workspace, store, model_bytes):
    """max_regression's threshold is the margin allowed below the champion, not a bound on the
    metric: "roc_auc 0.7813 vs 0.02" would misstate it; the gate's detail says what failed."""
    from mldeck.ml.gates import check_gates
    from mldeck.ml.settings import GateSettings

    (outcome,) = check_gates(GateSettings(max_regression={"roc_auc": 0.02}), {"roc_auc": 0.7813},
                             champion_metrics={"roc_auc": 0.8183}, champion_label="churn:1")  # fmt: skip
    version = add_version(workspace, store, model_bytes["a"])
    with store.write() as session:
        session.add(GateResult(model_version_id=version.id, run_id=version.run_id,
                               **outcome.as_dict()))  # fmt: skip
    registry.approve(store, "churn:1", reason="looks fine")
    with pytest.raises(MldeckError) as refused:
        registry.promote(store, "churn:1")
    assert (
        "max_regression (roc_auc 0.7813 vs churn:1 0.8183: worse by 0.037, more than the allowed "
        "0.02 (over by 0.017))" in str(refused.value)
    )
    assert "vs 0.02" not in str(refused.value)


def test_passed_gates_and_an_approval_need_no_force(workspace, store, model_bytes):
    add_version(workspace, store, model_bytes["a"], gates=(("min_auc", True),))
    registry.approve(store, "churn:1", reason="ok")
    change = registry.promote(store, "churn:1", force=True)  # nothing to force: not recorded so
    assert not change.forced
    assert events(store, "model_version.promote")[-1].details["forced"] is False


def test_promoting_the_champion_again_is_refused(workspace, store, model_bytes):
    add_version(workspace, store, model_bytes["a"])
    registry.approve(store, "churn:1", reason="ok")
    registry.promote(store, "churn:1")
    with pytest.raises(MldeckError, match="already the champion"):
        registry.promote(store, "churn@champion")
    with pytest.raises(MldeckError, match="unknown alias 'winner'"):
        registry.promote(store, "churn:1", alias="winner")


def test_the_pipelines_promote_stage_follows_rollbacks_not_challengers(
    workspace, store, model_bytes
):
    from mldeck.jobs.settings import JobSettings
    from mldeck.jobs.views import pipeline_view

    def promote_stage() -> str:
        return pipeline_view(store, JobSettings()).stages[-1].detail

    for content in (model_bytes["a"], model_bytes["b"]):
        add_version(workspace, store, content)
    for ref in ("churn:1", "churn:2"):
        registry.approve(store, ref, reason="ok")
    registry.promote(store, "churn:1")
    registry.promote(store, "churn:2")
    assert promote_stage() == "churn:2 champion"
    registry.rollback(store, "churn:1", reason="worse")
    assert promote_stage() == "churn:1 champion (rollback)"
    registry.promote(store, "churn:2", alias="challenger", reason="shadow it")
    assert promote_stage() == "churn:1 champion (rollback)"  # a challenger is not the champion


def test_a_rejected_challenger_stops_being_the_challenger(workspace, store, model_bytes):
    for content in (model_bytes["a"], model_bytes["b"]):
        add_version(workspace, store, content)
    registry.approve(store, "churn:1", reason="ok")
    registry.promote(store, "churn:1")
    registry.promote(store, "churn:2", alias="challenger", reason="shadow it")
    change = registry.approve(store, "churn:2", reason="worse in shadow", reject=True)
    assert change.removed_aliases == ["challenger"] and "no longer challenger" in change.describe()
    with pytest.raises(NotFound):  # no shadow scoring by a rejected version
        registry.resolve(store, "churn@challenger")
    assert events(store, "alias.remove")[-1].details["reason"] == "rejected"
    # The hint is a command that runs as written (without --reason it failed).
    with pytest.raises(MldeckError, match="churn:2 was rejected; a rejected version cannot be "
                                          r"the challenger \(approve it again first: 'mldeck "
                                          r"models approve churn:2 --reason TEXT'\)"):  # fmt: skip
        registry.promote(store, "churn:2", alias="challenger", reason="again")


def test_a_challenger_needs_no_approval_and_leaves_when_it_becomes_champion(
    workspace, store, model_bytes
):
    for content in (model_bytes["a"], model_bytes["b"]):
        add_version(workspace, store, content)
    registry.approve(store, "churn:1", reason="ok")
    registry.promote(store, "churn:1")
    challenger = registry.promote(store, "churn:2", alias="challenger", reason="shadow it")
    assert challenger.alias == "challenger" and challenger.previous_version is None
    assert registry.resolve(store, "churn@challenger").version == 2
    with pytest.raises(MldeckError, match="is the champion; it cannot also be its own challenger"):
        registry.promote(store, "churn:1", alias="challenger")

    registry.approve(store, "churn:2", reason="shadow went well")
    change = registry.promote(store, "churn:2", reason="better in shadow")
    assert change.previous_version == 1 and change.removed_aliases == ["challenger"]
    assert champion_version(store) == 2
    with pytest.raises(NotFound):
        registry.resolve(store, "churn@challenger")
    removed = events(store, "alias.remove")[-1]
    assert (
        removed.details["alias"] == "challenger" and removed.details["reason"] == "became champion"
    )
    with store.read() as session:
        assert session.get(ModelVersion, 1).status == registry.APPROVED  # the old one keeps it


# -- rollback ----------------------------------------------------------------------------------


def three_served_versions(workspace: Workspace, store: Store, model_bytes) -> None:
    """v1 and v2 served in turn, v3 serves now; each trained with its own schema and code."""
    for number, content in enumerate((model_bytes["a"], model_bytes["b"], model_bytes["a"]), 1):
        add_version(workspace, store, content,
                    schema={"columns": {f"col{i}": "Int64" for i in range(number + 1)}},
                    code_version={"git_commit": f"{number}" * 40, "git_dirty": number == 2})  # fmt: skip
        registry.approve(store, f"churn:{number}", reason=f"v{number} ok")
        registry.promote(store, f"churn:{number}", reason=f"ship v{number}")


def test_rollback_restores_an_earlier_version_with_its_schema_and_code(
    workspace, store, model_bytes
):
    three_served_versions(workspace, store, model_bytes)
    assert champion_version(store) == 3
    change = registry.rollback(store, "churn:1", reason="v3 misbehaves in production")
    assert champion_version(store) == 1
    assert len(champion_rows(store)) == 1
    assert change.previous_version == 3 and change.action == "rollback"
    assert change.schema["columns"] == {"col0": "Int64", "col1": "Int64"}
    assert change.code_version["git_commit"] == "1" * 40
    event = events(store, "model_version.rollback")[-1]
    assert event.details["previous_version"] == 3 and event.details["version"] == 1
    assert event.details["reason"] == "v3 misbehaves in production"
    assert event.details["code_version"]["git_commit"] == "1" * 40
    assert event.details["schema_digest"] == registry.schema_digest(change.schema)
    assert audit.verify(store).ok


def test_the_schema_digest_is_of_the_input_not_the_model_file(workspace, store, model_bytes):
    """Two versions that take the same data (different fitted models, so different files)
    digest equal; another input schema digests differently."""
    first = add_version(workspace, store, model_bytes["a"])
    second = add_version(workspace, store, model_bytes["c"])
    assert first.schema_["model_file"] != second.schema_["model_file"]
    assert registry.schema_digest(first.schema_) == registry.schema_digest(second.schema_)
    other = add_version(workspace, store, model_bytes["b"])  # fitted on two features of three
    assert registry.schema_digest(other.schema_) != registry.schema_digest(first.schema_)


def test_an_unknown_alias_in_a_reference_is_named_as_promote_names_it(
    workspace, store, model_bytes
):
    add_version(workspace, store, model_bytes["a"])
    with pytest.raises(MldeckError) as promoting:
        registry.promote(store, "churn:1", alias="champoin")
    with pytest.raises(MldeckError) as resolving:
        registry.resolve(store, "churn@champoin")
    assert str(resolving.value) == str(promoting.value)
    assert str(promoting.value) == "unknown alias 'champoin' (one of: champion, challenger)"
    # A known alias not set yet is still said as such.
    with pytest.raises(NotFound, match="no 'challenger' alias yet"):
        registry.resolve(store, "churn@challenger")


def test_rollback_by_name_goes_to_the_previous_champion(workspace, store, model_bytes):
    three_served_versions(workspace, store, model_bytes)
    change = registry.rollback(store, "churn", reason="back one step")
    assert change.version == 2 and champion_version(store) == 2
    change = registry.rollback(store, "churn", reason="and one more")
    assert change.version == 1
    with pytest.raises(MldeckError, match="no earlier champion"):
        registry.rollback(store, "churn", reason="nothing left")


def two_served_versions(workspace: Workspace, store: Store, model_bytes, name: str) -> None:
    """Versions 1 and 2 of model *name*, each approved and promoted in turn."""
    for number, content in enumerate((model_bytes["a"], model_bytes["b"]), 1):
        add_version(workspace, store, content, name=name)
        registry.approve(store, f"{name}:{number}", reason="ok")
        registry.promote(store, f"{name}:{number}", reason="ship")


def test_rollback_by_the_name_of_a_model_holding_a_colon(workspace, store, model_bytes):
    """A name such as 'churn:eu' is taken by [model]; 'rollback churn:eu' read it as a version
    reference and refused it."""
    two_served_versions(workspace, store, model_bytes, "churn:eu")
    change = registry.rollback(store, "churn:eu", reason="v2 misbehaves")
    assert (change.model, change.version) == ("churn:eu", 1)


def test_rollback_by_the_name_of_a_model_that_reads_as_a_version(workspace, store, model_bytes):
    """'rollback churn:v1' of a model named 'churn:v1' (registered before such names were
    refused) rolled back the champion of 'churn' instead."""
    three_served_versions(workspace, store, model_bytes)
    two_served_versions(workspace, store, model_bytes, "churn:v1")
    change = registry.rollback(store, "churn:v1", reason="v2 misbehaves")
    assert (change.model, change.version) == ("churn:v1", 1)
    assert champion_version(store) == 3  # churn's champion untouched
    # A new model so named is refused before a training registers it; this one keeps working.
    registry.check_new_name(store, "churn:v1")
    for name, reads in (("eu:v2", "eu:v2 names version 2 of 'eu'"),
                        ("team/7", "team/7 names version 7 of 'team'")):  # fmt: skip
        with pytest.raises(MldeckError, match=f"reads as a version \\({reads}\\)"):
            registry.check_new_name(store, name)
    for name in ("churn:eu", "churn:v2x", "churn/v", "v2", "churn:²"):
        registry.check_new_name(store, name)


def test_rollback_by_name_passes_over_champions_rejected_or_archived_since(
    workspace, store, model_bytes
):
    """v2 was rejected after it served: 'rollback churn' goes to v1 (it picked v2, then refused
    it as rejected); with v1 archived too, the error names both."""
    three_served_versions(workspace, store, model_bytes)
    registry.approve(store, "churn:2", reason="leaks the label", reject=True)
    change = registry.rollback(store, "churn", reason="v3 misbehaves")
    assert change.version == 1 and champion_version(store) == 1
    registry.promote(store, "churn:3", reason="fixed")
    registry.archive(store, "churn:1", reason="retired")
    with pytest.raises(MldeckError) as refused:
        registry.rollback(store, "churn", reason="again")
    assert str(refused.value) == (
        "no earlier champion of 'churn' to roll back to (churn:1 archived since, churn:2 rejected "
        "since); name a version (churn:N)"
    )


def test_rollback_refuses_what_is_not_an_earlier_usable_version(workspace, store, model_bytes):
    add_version(workspace, store, model_bytes["a"])
    with pytest.raises(MldeckError, match="no champion to roll back from"):
        registry.rollback(store, "churn:1", reason="x")
    registry.approve(store, "churn:1", reason="ok")
    registry.promote(store, "churn:1")
    add_version(workspace, store, model_bytes["b"])
    with pytest.raises(MldeckError, match="not earlier than the champion churn:1"):
        registry.rollback(store, "churn:2", reason="x")
    # Archived and later: said so, not "use promote" (which then refused it as archived).
    registry.archive(store, "churn:2", reason="retired")
    with pytest.raises(MldeckError, match="churn:2 is archived; an archived version cannot serve"):
        registry.rollback(store, "churn:2", reason="x")
    with pytest.raises(MldeckError, match="needs a reason"):
        registry.rollback(store, "churn:1", reason="")
    with pytest.raises(MldeckError, match="not to an alias"):
        registry.rollback(store, "churn@champion", reason="x")
    with pytest.raises(NotFound, match="no registered model 'nope'"):
        registry.rollback(store, "nope", reason="x")


def test_rollback_to_the_champion_itself_says_it_already_serves(workspace, store, model_bytes):
    add_version(workspace, store, model_bytes["a"])
    registry.approve(store, "churn:1", reason="ok")
    registry.promote(store, "churn:1")
    # Not "churn:1 is not earlier than the champion churn:1 (use promote)": promote refuses too.
    with pytest.raises(MldeckError, match=r"^churn:1 is already the champion$"):
        registry.rollback(store, "churn:1", reason="x")


def test_rollback_to_a_version_that_failed_its_gates_needs_force(workspace, store, model_bytes):
    add_version(workspace, store, model_bytes["a"], gates=(("min_auc", False),))
    registry.approve(store, "churn:1", reason="ok")
    registry.promote(store, "churn:1", force=True, reason="emergency")
    add_version(workspace, store, model_bytes["b"])
    registry.approve(store, "churn:2", reason="ok")
    registry.promote(store, "churn:2")
    with pytest.raises(MldeckError, match="failed its gates: min_auc") as refused:
        registry.rollback(store, "churn:1", reason="v2 broke")
    assert "(only 'mldeck models rollback churn:1 --force --reason TEXT' overrides them)" in str(
        refused.value
    )
    change = registry.rollback(store, "churn:1", reason="v2 broke", force=True)
    assert change.forced
    assert events(store, "model_version.rollback")[-1].details["forced"] is True


def test_a_rejected_version_that_failed_its_gates_is_told_its_rejection_first(
    workspace, store, model_bytes
):
    """--force overrides gates, not a rejection: naming the gates first sent the user to
    --force, only to be told about the rejection next."""
    add_version(workspace, store, model_bytes["a"], gates=(("min_auc", False),))
    registry.approve(store, "churn:1", reason="leaks the label", reject=True)
    for force in (False, True):
        with pytest.raises(MldeckError, match=r"churn:1 was rejected by .* \(leaks the label\)"):
            registry.promote(store, "churn:1", force=force, reason="try")


# -- archive -----------------------------------------------------------------------------------


def test_archive_retires_a_version_for_good(workspace, store, model_bytes):
    for content in (model_bytes["a"], model_bytes["b"], model_bytes["a"]):
        add_version(workspace, store, content)
    registry.approve(store, "churn:1", reason="ok")
    registry.promote(store, "churn:1")
    registry.promote(store, "churn:2", alias="challenger")
    with pytest.raises(MldeckError, match="is the champion and serves"):
        registry.archive(store, "churn:1")

    change = registry.archive(store, "churn:2", reason="superseded")
    assert change.removed_aliases == ["challenger"]
    with pytest.raises(NotFound):
        registry.resolve(store, "churn@challenger")
    with store.read() as session:
        assert session.get(ModelVersion, change.model_version_id).status == registry.ARCHIVED
    archived = events(store, "model_version.archive")[-1]
    assert (
        archived.details["reason"] == "superseded"
        and archived.details["previous_status"] == "candidate"
    )
    assert events(store, "alias.remove")[-1].details["reason"] == "archived"

    with pytest.raises(MldeckError, match="already archived"):
        registry.archive(store, "churn:2")
    for attempt in (
        lambda: registry.approve(store, "churn:2", reason="x"),
        lambda: registry.promote(store, "churn:2", auto_approve=True),
        lambda: registry.promote(store, "churn:2", alias="challenger"),
    ):
        with pytest.raises(MldeckError, match="archived"):
            attempt()
    registry.approve(store, "churn:3", reason="ok")
    registry.promote(store, "churn:3")
    with pytest.raises(MldeckError, match="archived"):
        registry.rollback(store, "churn:2", reason="x")
    assert audit.verify(store).ok


# -- queries -----------------------------------------------------------------------------------


def test_list_and_detail_show_aliases_gates_champion_metrics_and_lineage(
    workspace, store, model_bytes, tmp_path
):
    from mldeck.data.ingest import ingest_file

    ws = configure(workspace)
    data = tmp_path / "train.csv"
    churn_frame(50, seed=3).write_csv(data)
    dataset_version = ingest_file(ws, store, data).version_id
    add_version(ws, store, model_bytes["a"], metrics={"auc": 0.8, "test": {"f1": 0.5}})
    add_version(ws, store, model_bytes["b"], metrics={"auc": 0.85, "test": {"f1": 0.4}},
                gates=(("min_auc", True), ("fairness_gap", False)), inputs=(dataset_version,))  # fmt: skip
    registry.approve(store, "churn:1", reason="ok", user="bob")
    registry.promote(store, "churn:1")

    rows, total = list_model_versions(store)
    assert total == 2 and [r.label for r in rows] == ["churn:2", "churn:1"]
    assert rows[1].aliases == ("champion",) and rows[1].decided_by == "bob"
    assert (rows[0].gates_passed, rows[0].gates_failed) == (1, 1)
    assert list_model_versions(store, model="other") == ([], 0)

    detail = model_version_detail(store, rows[0].id)
    assert detail.champion.label == "churn:1"
    compared = {c.key: c for c in detail.comparison}
    assert compared["auc"].value == 0.85 and compared["auc"].champion == 0.8
    # The champion's own figures, from another holdout: shown, said so, and no delta (each
    # version looked better than the other from its own screen).
    assert not detail.champion_same_holdout
    assert compared["auc"].delta is None and compared["test.f1"].delta is None
    # A version trained beside the champion compares with the champion on its own holdout
    # (what its gates compared), not with the champion's metrics from an older holdout.
    add_version(ws, store, model_bytes["c"], metrics={
        "auc": 0.83, "holdout_rows": 600, "slices": {"smb": {"rows": 90, "auc": 0.7}},
        "champion": {"model_version_id": rows[1].id, "version": 1,
                     "metrics": {"auc": 0.84, "holdout_rows": 4000,
                                 "slices": {"smb": {"rows": 700, "auc": 0.75}}}}})  # fmt: skip
    newest = model_version_detail(store, list_model_versions(store)[0][0].id)
    by_key = {c.key: c for c in newest.comparison}
    assert by_key["auc"].champion == 0.84 and by_key["auc"].delta == pytest.approx(-0.01)
    assert newest.champion_same_holdout and newest.as_dict()["champion_same_holdout"]
    assert by_key["slices.smb.auc"].delta == pytest.approx(-0.05)
    # Counts are shown beside each other, with no "-3400" as if a model were worse by it.
    assert (by_key["holdout_rows"].champion, by_key["holdout_rows"].delta) == (4000, None)
    assert by_key["slices.smb.rows"].delta is None
    assert not any(k.startswith("champion.") for k in by_key)
    assert [g.gate for g in detail.gates if not g.passed] == ["fairness_gap"]
    assert detail.inputs[0][2] == dataset_version and detail.inputs[0][4] == "train"
    assert detail.run.kind == "train"
    assert [e.action for e in detail.history] == ["model_version.register"]
    as_json = json.loads(json.dumps(detail.as_dict()))
    assert as_json["lineage"]["inputs"][0]["dataset"] == "churn"
    assert as_json["lineage"]["model_version"] == "churn:2"
    # Promoted, churn:3 has no other champion to stand beside: the champion it was judged
    # against is shown instead (its column stood empty, every figure "-").
    registry.approve(store, "churn:3", reason="ok")
    registry.promote(store, "churn:3")
    promoted = model_version_detail(store, list_model_versions(store)[0][0].id)
    assert promoted.champion is None and promoted.evaluated_against.label == "churn:1"
    by_key = {c.key: c for c in promoted.comparison}
    assert by_key["auc"].champion == 0.84 and by_key["auc"].delta == pytest.approx(-0.01)
    assert promoted.as_dict()["evaluated_against"] == "churn:1"


# -- concurrency -------------------------------------------------------------------------------


def _promote_worker(url: str, ref: str, barrier: Any, results: Any) -> None:
    """A separate process: open the store, wait for the other one, promote at the same instant."""
    store = open_store(url)
    try:
        barrier.wait(timeout=60)
        try:
            change = registry.promote(store, ref, reason=f"race {ref}")
            results.put(("promoted", ref, change.previous_version))
        except MldeckError as exc:
            results.put(("refused", ref, str(exc)))
        except Exception as exc:
            results.put(("crashed", ref, repr(exc)))
    finally:
        store.close()


@dataclass
class Race:
    outcomes: list[tuple[str, str, Any]]


def race(workspace: Workspace, refs: tuple[str, str]) -> Race:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(refs))
    results = context.Queue()
    workers = [
        context.Process(target=_promote_worker, args=(workspace.db_url, ref, barrier, results))
        for ref in refs
    ]
    for worker in workers:
        worker.start()
    outcomes = []
    try:
        for _ in workers:
            outcomes.append(results.get(timeout=90))
    except queue_module.Empty:
        pytest.fail(f"a promoting process did not answer; got {outcomes}")
    finally:
        for worker in workers:
            worker.join(timeout=30)
    assert all(worker.exitcode == 0 for worker in workers)
    return Race(outcomes)


def test_two_processes_promoting_different_versions_leave_one_champion(
    workspace, store, model_bytes
):
    for content in (model_bytes["a"], model_bytes["b"]):
        add_version(workspace, store, content)
    registry.approve(store, "churn:1", reason="ok")
    registry.approve(store, "churn:2", reason="ok")

    result = race(workspace, ("churn:1", "churn:2"))

    assert not [o for o in result.outcomes if o[0] == "crashed"], result.outcomes
    promoted = [o for o in result.outcomes if o[0] == "promoted"]
    assert promoted, result.outcomes
    assert len(champion_rows(store)) == 1
    trail = events(store, "model_version.promote")
    assert len(trail) == len(promoted)
    # Serialised, not interleaved: the second promotion saw the first one's champion.
    assert trail[0].details["previous_version"] is None
    if len(trail) == 2:
        assert trail[1].details["previous_version"] == trail[0].details["version"]
    assert champion_version(store) == trail[-1].details["version"]
    assert audit.verify(store).ok


def test_two_processes_promoting_the_same_version_promote_it_once(workspace, store, model_bytes):
    add_version(workspace, store, model_bytes["a"])
    registry.approve(store, "churn:1", reason="ok")

    result = race(workspace, ("churn:1", "churn:1"))

    kinds = sorted(o[0] for o in result.outcomes)
    assert kinds == ["promoted", "refused"], result.outcomes
    refused = next(o for o in result.outcomes if o[0] == "refused")
    assert "already the champion" in refused[2]
    assert len(champion_rows(store)) == 1
    assert len(events(store, "model_version.promote")) == 1
    assert audit.verify(store).ok


# -- the command line --------------------------------------------------------------------------


def test_models_list_shows_overall_metrics_not_slices(workspace, store, model_bytes, cli):
    """A trained version's metrics also hold per-slice, cross-validation and champion figures
    under the same names: the list shows the overall metrics, the primary one first."""
    metrics = {"accuracy": 0.9, "roc_auc": 0.81, "f1": 0.7, "holdout_rows": 200,
               "slices": {"basic": {"rows": 50, "roc_auc": 0.71}, "plus": {"roc_auc": 0.72}},
               "cv": {"roc_auc": 0.8}, "champion": {"metrics": {"roc_auc": 0.79}}}  # fmt: skip
    add_version(workspace, store, model_bytes["a"], metrics=metrics)
    listed = cli("models", "list", cwd=workspace.root, env={"COLUMNS": "200"})
    assert listed.returncode == 0, listed.stderr
    assert "roc_auc 0.81, accuracy 0.9, f1 0.7" in listed.stdout
    assert "slices" not in listed.stdout and "0.71" not in listed.stdout


def test_models_commands(workspace, store, model_bytes, cli):
    root = workspace.root
    # The primary metric (roc_auc by default) is listed first, whatever comes before it.
    metrics = {"accuracy": 0.9, "f1": 0.7, "precision": 0.6, "recall": 0.5}
    add_version(workspace, store, model_bytes["a"], metrics={**metrics, "roc_auc": 0.81})
    add_version(workspace, store, model_bytes["b"], metrics={**metrics, "roc_auc": 0.78},
                gates=(("no_regression", False),))  # fmt: skip

    def mldeck(*args: str):
        return cli(*args, "--workspace", str(root), cwd=root.parent)

    listed = cli("models", "list", "-w", str(root), cwd=root.parent, env={"COLUMNS": "200"})
    assert listed.returncode == 0, listed.stderr
    assert "churn:2" in listed.stdout and "1 FAILED" in listed.stdout
    assert "roc_auc 0.81, accuracy 0.9, f1 0.7" in listed.stdout

    assert_one_line_error(mldeck("models", "promote", "churn:1"), "not approved", "approve")
    approved = mldeck("models", "approve", "churn:1", "--reason", "holdout looks good")
    assert approved.returncode == 0, approved.stderr
    assert "churn:1 approved by" in approved.stdout
    promoted = mldeck("models", "promote", "churn:1", "-m", "first release")
    assert promoted.returncode == 0 and "churn:1 is now champion" in promoted.stdout

    # Approving a version that failed a gate is allowed, and says it does not make it promotable.
    approved = mldeck("models", "approve", "churn:2", "--reason", "try it\x1b[31m\nFAKE line")
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.strip().endswith(
        "; it failed its gates (no_regression (auc 0.6 vs 0.75)): it is not promoted unless the "
        "promotion is "
        "forced ('mldeck models promote churn:2 --force --reason TEXT')"
    )
    assert_one_line_error(mldeck("models", "promote", "churn:2"), "failed its gates: no_regression")
    forced = mldeck("models", "promote", "churn:2", "--force", "--reason", "known regression")
    assert forced.returncode == 0 and "FORCED past failed gates: no_regression" in forced.stdout

    shown = mldeck("models", "show", "churn:2")
    assert shown.returncode == 0, shown.stderr
    for needle in ("churn:2", "champion", "FAIL", "no_regression", "model_version.promote (champion) by",
                   "FORCED: known regression", "approved by", "try it"):  # fmt: skip
        assert needle in shown.stdout, needle
    # A reason is shown, never sent to the terminal as it is (History printed it raw).
    assert "\x1b" not in shown.stdout and "\nFAKE line" not in shown.stdout
    detail = json.loads(mldeck("models", "show", "churn:1", "--json").stdout)
    compared = {c["metric"]: c["champion"] for c in detail["comparison"]}
    assert detail["label"] == "churn:1" and compared["roc_auc"] == 0.78
    # churn:1's figures and the champion's come from two trainings' holdouts: said under them.
    assert not detail["champion_same_holdout"]
    assert (
        "churn:2's figures are from its own holdout" in mldeck("models", "show", "churn:1").stdout
    )

    rolled = mldeck("models", "rollback", "churn:1", "--reason", "regression confirmed")
    assert rolled.returncode == 0, rolled.stderr
    assert "churn:1 is champion again (was churn:2)" in rolled.stdout
    # Each version's History says when another version took its alias (those events are the
    # other version's), in order with its own.
    history = mldeck("models", "show", "churn:1").stdout.partition("History")[2].splitlines()
    lost = [n for n, line in enumerate(history) if "lost champion to churn:2 (promote)" in line]
    assert len(lost) == 1 and history[lost[0]].endswith(": known regression"), history
    assert "model_version.rollback (champion)" in history[lost[0] + 1]
    shown = mldeck("models", "show", "churn:2").stdout
    assert "lost champion to churn:1 (rollback) by" in shown and ": regression confirmed" in shown
    taken = json.loads(mldeck("models", "show", "churn:2", "--json").stdout)["replaced_by"]
    assert [(e["action"], e["details"]["version"]) for e in taken] == [
        ("model_version.rollback", 1)
    ]
    assert "now serving: churn:1" in rolled.stdout and "code aaaaaaaaaaaa" in rolled.stdout
    archived = mldeck("models", "archive", "churn:2", "--reason", "bad")
    assert archived.returncode == 0 and "churn:2 archived" in archived.stdout

    assert_one_line_error(mldeck("models", "show", "nope@champion"), "no registered model 'nope'")
    assert_one_line_error(mldeck("models", "show", "churn"), "is not a model reference")
    # A model name that is not registered is a mistake, not an empty list.
    assert_one_line_error(mldeck("models", "list", "--model", "chrun"),
                          "no registered model 'chrun' (registered: churn)")  # fmt: skip
    listed = json.loads(mldeck("models", "list", "--json").stdout)
    assert {v["label"]: v["status"] for v in listed["versions"]} == {
        "churn:1": "approved",
        "churn:2": "archived",
    }
    assert audit.verify(store).ok


def test_a_version_whose_model_file_is_damaged_or_gone_cannot_become_champion(
    workspace, store, model_bytes
):
    """A rollback (the emergency path) to a version whose file was damaged said "now serving",
    and every score failed after it."""
    three_served_versions(workspace, store, model_bytes)
    with store.read() as session:
        version = session.execute(
            select(ModelVersion).where(ModelVersion.version == 2)
        ).scalar_one()
        path = workspace.root / session.get(Artifact, version.artifact_id).path
    path.chmod(0o644)
    path.write_bytes(path.read_bytes()[:-1] + b"X")
    with pytest.raises(MldeckError, match=r"churn:2 cannot be the champion: .*sha256"):
        registry.rollback(store, "churn:2", reason="v3 misbehaves", root=workspace.root)
    path.unlink()
    with pytest.raises(MldeckError, match=r"churn:2 cannot be the champion: .*missing"):
        registry.rollback(store, "churn", reason="v3 misbehaves", root=workspace.root)
    with pytest.raises(MldeckError, match=r"churn:2 cannot be the challenger"):
        registry.promote(store, "churn:2", alias="challenger", root=workspace.root)
    assert champion_version(store) == 3


def test_auto_approve_does_not_approve_a_version_forced_past_failed_gates(
    workspace, store, model_bytes
):
    """The forced promotion was recorded as approved automatically by the policy, which
    approves versions that passed their gates."""
    add_version(workspace, store, model_bytes["a"], gates=(("min_roc_auc", False),))
    with pytest.raises(MldeckError, match=r"auto_approve approves only versions that passed"):
        registry.promote(store, "churn:1", reason="ship it", force=True, auto_approve=True)
    assert champion_rows(store) == [] and events(store, "model_version.approve") == []
    registry.approve(store, "churn:1", reason="checked by hand")
    change = registry.promote(store, "churn:1", reason="ship it", force=True, auto_approve=True)
    assert change.forced


def test_registry_changes_print_json_for_scripts(workspace, store, model_bytes, cli):
    """approve, promote, rollback and archive printed only a sentence: a script had to parse it."""
    three_served_versions(workspace, store, model_bytes)
    add_version(workspace, store, model_bytes["b"])

    def mldeck(*args: str) -> dict:
        done = cli(*args, "--json", "--workspace", str(workspace.root), cwd=workspace.root.parent)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    approved = mldeck("models", "approve", "churn:4", "--reason", "looks good")
    assert approved["action"] == "approve" and approved["label"] == "churn:4"
    assert approved["reason"] == "looks good" and approved["message"].startswith("churn:4 approved")
    promoted = mldeck("models", "promote", "churn:4", "--alias", "challenger")
    assert (promoted["alias"], promoted["version"]) == ("challenger", 4)
    rolled = mldeck("models", "rollback", "churn:1", "--reason", "v3 misbehaves")
    assert (rolled["action"], rolled["version"], rolled["previous_version"]) == ("rollback", 1, 3)
    assert rolled["code_version"]["git_commit"] == "1" * 40
    assert rolled["schema_digest"] == registry.schema_digest(rolled["schema"])
    archived = mldeck("models", "archive", "churn:2", "--reason", "superseded")
    assert archived["action"] == "archive" and archived["message"] == "churn:2 archived"
