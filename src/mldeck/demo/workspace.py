"""The demo workspace: the sample data, a user script, and a first real tracked run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from mldeck.errors import MldeckError
from mldeck.workspace import (
    ENV_WORKSPACE,
    Workspace,
    create_workspace_store,
    load_workspace,
    open_workspace_store,
)

BASELINE_SCRIPT = Path(__file__).with_name("train_baseline.py")
# Demos move fast: take files dropped into data/incoming/ after half a second of quiet.
SETTLE = "settle_seconds = 0.5\n"
# What 'mldeck run train' trains in the demo, and the gates a candidate must pass.
MODEL_CONFIG = """
[model]
name = "churn"
target = "churned"
segment_column = "segment"
params = {max_iter = 100}
threads = 1
# The newest 12 weeks: a demo left feeding for hours keeps retrains as short as its first ones.
newest_versions = 12

[gates]
min = {roc_auc = 0.75}
max_regression = {roc_auc = 0.02}
max_fairness_gap = 0.2

# Drift: the demo's shifted batches move 3 or 4 of 21 features, so dataset drift is called
# from 15 % of drifted features (the default, 50 %, suits wide tables of loosely related data).
[monitor]
drift_share = 0.15

# A demo's weeks arrive every few seconds ('mldeck demo --feed'): an automatic retrain may follow
# another after 2 minutes, not the default hour (one retrain, then every drift skipped).
[jobs]
retrain_cooldown_minutes = 2
"""
# Labels may arrive after their batch, in a label file ('mldeck drift labels FILE').
LABEL_OPTIONAL = "[data.columns.churned]\nrequired = false\n"


def create_demo_workspace(
    root: Path,
    *,
    name: str | None = None,
    echo: Callable[[str], None] = print,
    train: bool = True,
) -> Workspace:
    """A workspace holding the demo data (``data/samples``), expectations inferred from its
    reference (in ``mldeck.toml``), the reference ingested as the dataset's baseline,
    ``scripts/train_baseline.py`` and, when *train*, one baseline training run recorded by it."""
    from mldeck.data.expectations import DataSettings
    from mldeck.data.infer import append_to_config, expectations_toml
    from mldeck.data.ingest import ingest_file
    from mldeck.data.readers import open_source
    from mldeck.data.validate import reference_profile
    from mldeck.demo.generator import write_sample_data

    workspace, store = create_workspace_store(root, name=name or "churn-demo")
    store.close()
    samples = workspace.data_dir / "samples"
    echo(f"writing the demo data to {samples.relative_to(workspace.root)}/")
    write_sample_data(samples)
    reference = samples / "reference.parquet"
    profiled = reference_profile(open_source(reference), DataSettings(table={"unique_ids": False}))
    text = expectations_toml(
        profiled, dataset="churn", reference=str(reference.relative_to(workspace.root))
    )
    text = text.replace("[data]\n", "[data]\n" + SETTLE, 1) + MODEL_CONFIG
    text = text.replace("[data.columns.churned]\n", LABEL_OPTIONAL, 1)
    append_to_config(workspace.config_path, text)
    echo(f"inferred expectations for {len(profiled.profile['columns'])} columns into mldeck.toml")
    workspace = load_workspace(workspace.root)
    store = open_workspace_store(workspace)
    try:
        outcome = ingest_file(workspace, store, reference, as_reference=True)
    finally:
        store.close()
    echo(f"ingested the reference as {outcome.dataset}:v{outcome.version} ({outcome.status})")
    scripts = workspace.root / "scripts"
    scripts.mkdir(exist_ok=True)
    shutil.copyfile(BASELINE_SCRIPT, scripts / BASELINE_SCRIPT.name)
    if train:
        echo("training a baseline model with scripts/train_baseline.py (a tracked run)")
        env = {**os.environ, ENV_WORKSPACE: str(workspace.root)}
        done = subprocess.run(
            [sys.executable, str(Path("scripts") / BASELINE_SCRIPT.name)],
            cwd=workspace.root,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise MldeckError(f"the demo's baseline training failed: {last}")
        echo(done.stdout.strip())
    return workspace


def serve_first_model(workspace: Workspace, echo: Callable[[str], None] = print) -> str:
    """Train ``[model]``, approve and promote it: the champion 'mldeck demo' starts with, so
    the first batches are scored and their performance estimated (without one, the storyline's
    first weeks showed drift only, and a retrain on a concept-drift week could fail its gates
    and leave the demo without any champion). The label of the version."""
    from mldeck.ml import registry
    from mldeck.ml.train import train

    store = open_workspace_store(workspace)
    try:
        echo("training the first model ([model] in mldeck.toml)")
        trained = train(workspace, store)
        label = f"{trained.model}:{trained.version}"
        reason = "the demo's first model"
        registry.approve(store, label, reason=reason)
        registry.promote(store, label, reason=reason, root=workspace.root)
    finally:
        store.close()
    echo(f"{label} approved and promoted: the champion the batches are scored with")
    return label
