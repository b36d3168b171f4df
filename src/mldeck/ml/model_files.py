"""Model files: skops, content-addressed, verified before they are read, never a pickle.

Saving: ``skops.io.dumps`` → the types skops does not trust by default
(``skops.io.get_untrusted_types``) are recorded as the file's trusted set, after checking that each
one comes from an allowed package (scikit-learn, numpy, scipy, mldeck) → the bytes go to
``.mldeck/artifacts/<sha[:2]>/<sha>.skops`` atomically (temporary file, fsync, rename).

Loading refuses, before skops builds a single object:

* a path that leaves the workspace;
* a file whose sha256 is not the recorded one (modified, truncated, replaced);
* a file holding a type that is not in its recorded trusted set, or that comes from a package
  outside the allow-list (whatever the record says).

Only then is ``skops.io.loads`` called with that explicit ``trusted`` list.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mldeck.errors import MldeckError
from mldeck.store.artifacts import put_stream, resolve, verify

if TYPE_CHECKING:
    from mldeck.store.engine import Store
    from mldeck.store.models import Artifact, ModelVersion
    from mldeck.workspace import Workspace

FORMAT = "skops"
SUFFIX = ".skops"
# Top-level packages whose types a model file may hold.
ALLOWED_PACKAGES = frozenset({"sklearn", "numpy", "scipy", "mldeck"})


class ModelFileError(MldeckError):
    """A model file cannot be saved or loaded safely."""


@dataclass(frozen=True)
class SavedModel:
    """A stored model file: where it is (relative to the workspace), its hash and trusted types."""

    sha256: str
    path: str
    size_bytes: int
    trusted_types: list[str] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        """What to keep next to the artifact so the file can be loaded again (JSON)."""
        return {
            "format": FORMAT,
            "sha256": self.sha256,
            "path": self.path,
            "size_bytes": self.size_bytes,
            "trusted_types": list(self.trusted_types),
            "skops_version": _skops_version(),
        }


def _skops_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("skops")
    except metadata.PackageNotFoundError:  # pragma: no cover - skops is a dependency
        return ""


def allowed_type(name: str) -> bool:
    """Whether the fully qualified type name *name* belongs to an allowed package."""
    return name.split(".", 1)[0] in ALLOWED_PACKAGES


def _untrusted_types(data: bytes) -> list[str]:
    """The types in skops bytes that skops does not trust by default (reads the schema only)."""
    import skops.io as sio

    try:
        return sorted(sio.get_untrusted_types(data=data))
    except Exception as exc:  # a damaged archive raises zipfile, json or key errors
        raise ModelFileError(
            f"not a readable skops model file ({type(exc).__name__}: {exc})"
        ) from None


def dumps(model: Any) -> tuple[bytes, list[str]]:
    """The skops bytes of *model* and the types to trust when loading them.

    Raises ModelFileError when skops cannot save the model or when it holds a type from a
    package outside the allow-list (it could never be loaded back).
    """
    import skops.io as sio

    try:
        data = sio.dumps(model)
    except Exception as exc:
        raise ModelFileError(
            f"the model cannot be saved with skops ({type(exc).__name__}: {exc})"
        ) from None
    trusted = _untrusted_types(data)
    refused = [name for name in trusted if not allowed_type(name)]
    if refused:
        raise ModelFileError(
            f"the model holds types mldeck will not load: {', '.join(refused)} "
            f"(allowed: types from {', '.join(sorted(ALLOWED_PACKAGES))})"
        )
    return data, trusted


def save_model(workspace_root: Path, artifacts_dir: Path, model: Any) -> SavedModel:
    """Save *model* into the content-addressed artifact store, atomically."""
    data, trusted = dumps(model)
    sha, path, size = put_stream(artifacts_dir, io.BytesIO(data), suffix=SUFFIX)
    relative = str(path.relative_to(workspace_root.resolve()))
    return SavedModel(sha, relative, size, trusted)


def loads(data: bytes, trusted_types: Sequence[str], *, label: str = "model file") -> Any:
    """Build the model from skops bytes, refusing any type outside *trusted_types* or outside
    the allow-list before anything is constructed."""
    import skops.io as sio

    present = _untrusted_types(data)
    recorded = set(trusted_types)
    outside_allow = [name for name in present if not allowed_type(name)]
    if outside_allow:
        raise ModelFileError(
            f"{label} holds types from packages mldeck never loads: {', '.join(outside_allow)}; "
            "it was not loaded"
        )
    unrecorded = [name for name in present if name not in recorded]
    if unrecorded:
        raise ModelFileError(
            f"{label} holds types that were not in it when it was saved: "
            f"{', '.join(unrecorded)}; it was not loaded"
        )
    try:
        return sio.loads(data, trusted=present)
    except Exception as exc:
        raise ModelFileError(f"{label} cannot be loaded ({type(exc).__name__}: {exc})") from None


def load_model(workspace_root: Path, path: str, sha256: str, trusted_types: Sequence[str]) -> Any:
    """Load the model file at *path* (relative to the workspace) after checking where it is,
    its sha256 and its types."""
    file = resolve(workspace_root, path)
    verify(file, sha256)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    # Hash the very bytes skops will see: the file could change between the check and the read.
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ModelFileError(f"{path} changed while it was being loaded; it was not loaded")
    return loads(data, trusted_types, label=path)


def version_record(version: ModelVersion) -> dict[str, Any]:
    """The model-file record kept in a version's schema (``schema["model_file"]``)."""
    record = (version.schema_ or {}).get("model_file")
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ModelFileError(
            f"model version {version.id} has no skops model file record; it cannot be loaded"
        )
    return record


def load_model_file(
    workspace: Workspace, artifact: Artifact, trusted_types: Sequence[str] | None = None
) -> Any:
    """Load the model file of an ``Artifact`` row. Without *trusted_types*, they are taken from
    the record of the model version that owns the artifact (looked up in the store)."""
    if trusted_types is None:
        from sqlalchemy import select

        from mldeck.store.models import ModelVersion
        from mldeck.workspace import open_workspace_store

        store = open_workspace_store(workspace)
        try:
            with store.read() as session:
                version = session.execute(
                    select(ModelVersion)
                    .where(ModelVersion.artifact_id == artifact.id)
                    .order_by(ModelVersion.id)
                    .limit(1)
                ).scalar_one_or_none()
        finally:
            store.close()
        if version is None:
            raise ModelFileError(
                f"{artifact.path} belongs to no model version, so there is no record of the "
                "types it may hold; it was not loaded"
            )
        record = version_record(version)
        if record.get("sha256") != artifact.sha256:
            raise ModelFileError(
                f"model version {version.id}: its record and its artifact disagree on the "
                "file's sha256; it was not loaded"
            )
        trusted_types = record["trusted_types"]
    return load_model(workspace.root, artifact.path, artifact.sha256, trusted_types)


def load_version(workspace: Workspace, store: Store, version: ModelVersion) -> Any:
    """The fitted model of a registered version: its artifact row, verified and loaded."""
    from mldeck.store.models import Artifact

    if version.artifact_id is None:
        raise ModelFileError(f"model version {version.id} has no model file")
    with store.read() as session:
        artifact = session.get(Artifact, version.artifact_id)
    if artifact is None:
        raise ModelFileError(f"the model file of model version {version.id} is not recorded")
    record = version_record(version)
    if record.get("sha256") != artifact.sha256:
        raise ModelFileError(
            f"model version {version.id}: its record and its artifact disagree on the file's "
            "sha256; it was not loaded"
        )
    return load_model_file(workspace, artifact, record["trusted_types"])
