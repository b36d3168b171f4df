"""Model files: saved with skops under their sha256, written atomically, and on load checked
(place, hash, types) before skops builds anything. A refused file is never executed."""

from __future__ import annotations

import io
import os
from datetime import datetime

import numpy as np
import pytest
import skops.io as sio
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from mldeck.demo.generator import generate_batch
from mldeck.ml import model_files
from mldeck.ml.model_files import (
    ModelFileError,
    allowed_type,
    dumps,
    load_model,
    load_model_file,
    load_version,
    save_model,
)
from mldeck.ml.registry import register_version
from mldeck.store import artifacts
from mldeck.store.artifacts import ArtifactError, put_stream
from mldeck.store.models import Artifact

FEATURES = ["tenure_months", "monthly_charges", "plan", "segment"]


class Sneaky:
    """A type from outside the allow-list. Every construction is counted, so a refused load can
    be shown to have built nothing."""

    built = 0

    def __init__(self) -> None:
        Sneaky.built += 1
        self.payload = "would run on load"

    def __setstate__(self, state: dict) -> None:
        Sneaky.built += 1
        self.__dict__.update(state)


@pytest.fixture(scope="module")
def data():
    frame = generate_batch(400, start=datetime(2026, 1, 5), seed=3)
    return frame.select(FEATURES), frame["churned"].to_numpy()


@pytest.fixture(scope="module")
def model(data):
    x, y = data
    preprocess = ColumnTransformer(
        [
            ("numbers", "passthrough", ["tenure_months", "monthly_charges"]),
            ("categories", OneHotEncoder(handle_unknown="ignore"), ["plan", "segment"]),
        ],
        sparse_threshold=0,
    )
    pipeline = Pipeline(
        [("preprocess", preprocess), ("model", HistGradientBoostingClassifier(max_iter=10))]
    )
    return pipeline.fit(x, y)


def no_skops(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any use of skops' loading functions fail the test."""

    def refuse(*_args, **_kwargs):
        raise AssertionError("skops was handed a file that should have been refused first")

    monkeypatch.setattr(sio, "loads", refuse)
    monkeypatch.setattr(sio, "get_untrusted_types", refuse)


def test_round_trip(workspace, model, data):
    saved = save_model(workspace.root, workspace.artifacts_dir, model)
    path = workspace.root / saved.path
    assert saved.path == f".mldeck/artifacts/{saved.sha256[:2]}/{saved.sha256}.skops"
    assert path.stat().st_size == saved.size_bytes
    # The trusted set is what skops reports for the saved bytes, all from allowed packages.
    assert saved.trusted_types == sorted(sio.get_untrusted_types(file=path))
    assert "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor" in saved.trusted_types
    record = saved.record()
    assert record["format"] == "skops" and record["trusted_types"] == saved.trusted_types
    assert not list(workspace.artifacts_dir.rglob(".incoming-*"))
    loaded = load_model(workspace.root, saved.path, saved.sha256, saved.trusted_types)
    x, _ = data
    assert np.array_equal(loaded.predict_proba(x), model.predict_proba(x))


@pytest.mark.parametrize("damage", ["flip", "truncate", "append", "delete"])
def test_damaged_file_is_refused_before_skops_sees_it(workspace, model, monkeypatch, damage):
    saved = save_model(workspace.root, workspace.artifacts_dir, model)
    path = workspace.root / saved.path
    content = bytearray(path.read_bytes())
    if damage == "flip":
        content[len(content) // 2] ^= 0x01
        path.write_bytes(bytes(content))
    elif damage == "truncate":
        path.write_bytes(bytes(content[: len(content) - 100]))
    elif damage == "append":
        path.write_bytes(bytes(content) + b"\x00")
    else:
        path.unlink()
    no_skops(monkeypatch)
    expected = "missing" if damage == "delete" else "does not match its recorded sha256"
    with pytest.raises(ArtifactError, match=expected):
        load_model(workspace.root, saved.path, saved.sha256, saved.trusted_types)


@pytest.mark.parametrize(
    "where", ["../outside.skops", "/etc/hostname", ".mldeck/../../outside.skops"]
)
def test_paths_outside_the_workspace_are_refused(workspace, monkeypatch, where):
    (workspace.root.parent / "outside.skops").write_bytes(b"not yours")
    no_skops(monkeypatch)
    with pytest.raises(ArtifactError, match="outside the workspace"):
        load_model(workspace.root, where, "0" * 64, [])


def store_bytes(workspace, data: bytes) -> tuple[str, str]:
    sha, path, _ = put_stream(workspace.artifacts_dir, io.BytesIO(data), suffix=".skops")
    return sha, str(path.relative_to(workspace.root))


def test_a_type_outside_the_allow_list_is_refused_and_never_built(workspace):
    data = sio.dumps({"weights": [1.0, 2.0], "hook": Sneaky()})
    name = f"{__name__}.Sneaky"
    assert name in sio.get_untrusted_types(data=data)
    sha, path = store_bytes(workspace, data)
    built = Sneaky.built
    # Not in the recorded trusted set, and from outside the allow-list: refused either way,
    # even when a tampered record claims the type was trusted at save time.
    for trusted in ([], [name]):
        with pytest.raises(ModelFileError, match=f"packages mldeck never loads: {name}"):
            load_model(workspace.root, path, sha, trusted)
    assert Sneaky.built == built  # nothing was constructed
    # The check matters: skops itself would build the object if told to trust it.
    sio.loads(data, trusted=[name])
    assert Sneaky.built == built + 1


def test_a_model_holding_such_a_type_cannot_be_saved(workspace):
    with pytest.raises(ModelFileError, match=f"will not load: {__name__}.Sneaky"):
        save_model(workspace.root, workspace.artifacts_dir, {"hook": Sneaky()})
    assert [p for p in workspace.artifacts_dir.rglob("*") if p.is_file()] == []


def test_a_type_not_recorded_at_save_time_is_refused(workspace, model):
    data, trusted = dumps(model)
    sha, path = store_bytes(workspace, data)
    partial = [t for t in trusted if not t.endswith("TreePredictor")]
    with pytest.raises(ModelFileError, match=r"not in it when it was saved: .*TreePredictor"):
        load_model(workspace.root, path, sha, partial)
    assert load_model(workspace.root, path, sha, trusted) is not None


def test_a_file_that_is_not_skops_is_refused(workspace):
    sha, path = store_bytes(workspace, b"PK\x03\x04 certainly not a zip archive")
    with pytest.raises(ModelFileError, match="not a readable skops model file"):
        load_model(workspace.root, path, sha, [])


def test_allowed_types():
    assert allowed_type("sklearn.tree._tree.Tree")
    assert allowed_type("numpy.dtype") and allowed_type("scipy.sparse._csr.csr_matrix")
    assert allowed_type("mldeck.anything.Here")
    for name in ("sklearnx.evil.Thing", "builtins.eval", "os.system", "tests.Sneaky", "numpy"):
        assert allowed_type(name) == (name == "numpy"), name


def test_an_interrupted_write_leaves_no_file(workspace, model, monkeypatch):
    def fail(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(artifacts.os, "replace", fail)
    with pytest.raises(OSError, match="No space left"):
        save_model(workspace.root, workspace.artifacts_dir, model)
    assert [p for p in workspace.artifacts_dir.rglob("*") if p.is_file()] == []


def register(store, saved, name: str = "churn") -> tuple[int, int]:
    with store.write() as session:
        artifact = Artifact(name=f"{name}.skops", kind="model", path=saved.path,
                            sha256=saved.sha256, size_bytes=saved.size_bytes)  # fmt: skip
        session.add(artifact)
        session.flush()
        version = register_version(
            session, name, run_id=None, artifact_id=artifact.id, metrics={},
            schema={"features": FEATURES, "model_file": saved.record()}, code_version={},
        )  # fmt: skip
        return artifact.id, version.id


def test_registered_versions_load_with_their_record(workspace, store, model, data):
    from mldeck.store.models import ModelVersion

    saved = save_model(workspace.root, workspace.artifacts_dir, model)
    artifact_id, version_id = register(store, saved)
    with store.read() as session:
        version = session.get(ModelVersion, version_id)
        artifact = session.get(Artifact, artifact_id)
    x, _ = data
    expected = model.predict_proba(x)
    assert np.array_equal(load_version(workspace, store, version).predict_proba(x), expected)
    # From the artifact row alone, the trusted types come from the version that owns it.
    assert np.array_equal(load_model_file(workspace, artifact).predict_proba(x), expected)
    # An artifact no version owns has no record of its types.
    with store.write() as session:
        orphan = Artifact(name="stray.skops", kind="model", path=saved.path,
                          sha256=saved.sha256, size_bytes=saved.size_bytes)  # fmt: skip
        session.add(orphan)
    with pytest.raises(ModelFileError, match="belongs to no model version"):
        load_model_file(workspace, orphan)
    # A record and an artifact that disagree are refused.
    version.schema_ = {**version.schema_, "model_file": {**saved.record(), "sha256": "0" * 64}}
    with pytest.raises(ModelFileError, match="disagree"):
        load_version(workspace, store, version)
    # A tampered file behind a registered version is refused too.
    path = workspace.root / saved.path
    os.chmod(path, 0o644)
    path.write_bytes(path.read_bytes()[:-1])
    with store.read() as session:
        version = session.get(ModelVersion, version_id)
    with pytest.raises(ArtifactError, match="modified or truncated"):
        load_version(workspace, store, version)
    assert model_files.FORMAT == "skops"
