"""The model registry: versions (with lineage and metrics), aliases, approvals, promotion.

Every change of state is made in one ``BEGIN IMMEDIATE`` transaction together with its audit
event (``mldeck.audit.append``), so the registry and its trail never disagree.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session

from mldeck import audit
from mldeck.errors import MldeckError, NotFound
from mldeck.store.engine import Store
from mldeck.store.models import Alias, ModelVersion, RegisteredModel

CHAMPION = "champion"
CHALLENGER = "challenger"


def register_version(
    session: Session,
    model_name: str,
    *,
    run_id: int | None,
    artifact_id: int | None,
    metrics: dict[str, Any],
    schema: dict[str, Any],
    code_version: dict[str, Any],
    status: str = "candidate",
) -> ModelVersion:
    """Add the next version of *model_name* (created on first use), inside the caller's write
    transaction, with its audit event."""
    model = session.execute(
        select(RegisteredModel).where(RegisteredModel.name == model_name)
    ).scalar_one_or_none()
    if model is None:
        model = RegisteredModel(name=model_name)
        session.add(model)
        session.flush()
        audit.append(session, "model.create", entity_type="model", entity_id=model.id,
                     details={"name": model_name})  # fmt: skip
    number = (
        session.execute(
            select(func.max(ModelVersion.version)).where(ModelVersion.model_id == model.id)
        ).scalar()
        or 0
    ) + 1
    version = ModelVersion(
        model_id=model.id,
        version=number,
        run_id=run_id,
        artifact_id=artifact_id,
        status=status,
        metrics=metrics,
        schema_=schema,
        code_version=code_version,
    )
    session.add(version)
    session.flush()
    audit.append(session, "model_version.register", entity_type="model_version",
                 entity_id=version.id,
                 details={"model": model_name, "version": number, "run_id": run_id})  # fmt: skip
    return version


def parse_ref(ref: str) -> tuple[str, str | None, int | None]:
    """``churn@champion`` → (churn, champion, None); ``churn:3`` or ``churn/3`` → (churn, None, 3)."""
    ref = ref.strip()
    if "@" in ref:
        name, _, alias = ref.partition("@")
        if name and alias:
            return name, alias, None
    for sep in (":", "/"):
        name, found, number = ref.rpartition(sep)
        if found and name and number.lstrip("v").isdigit():
            return name, None, int(number.lstrip("v"))
    raise MldeckError(
        f"{ref!r} is not a model reference: use NAME@ALIAS (churn@champion) or NAME:VERSION (churn:3)"
    )


def resolve(store: Store, ref: str) -> ModelVersion:
    """The model version *ref* names (``churn@champion``, ``churn:3``)."""
    name, alias, number = parse_ref(ref)
    with store.read() as session:
        model = session.execute(
            select(RegisteredModel).where(RegisteredModel.name == name)
        ).scalar_one_or_none()
        if model is None:
            raise NotFound(f"no registered model {name!r} (see 'mldeck models list')")
        if alias is not None:
            version = session.execute(
                select(ModelVersion)
                .join(Alias, Alias.model_version_id == ModelVersion.id)
                .where(Alias.model_id == model.id, Alias.name == alias)
            ).scalar_one_or_none()
            if version is None:
                raise NotFound(f"model {name!r} has no {alias!r} alias yet")
            return version
        version = session.execute(
            select(ModelVersion).where(
                ModelVersion.model_id == model.id, ModelVersion.version == number
            )
        ).scalar_one_or_none()
    if version is None:
        raise NotFound(f"model {name!r} has no version {number}")
    return version
