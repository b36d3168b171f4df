"""`mldeck backup`: a workspace copied whole, its store as of one moment, while others write."""

from __future__ import annotations

import json
import threading

import mldeck
from mldeck import audit
from mldeck.backup import backup_workspace
from mldeck.data.ingest import ingest_file
from mldeck.ml import registry
from mldeck.store import queries
from mldeck.store.engine import open_store
from mldeck.workspace import load_workspace

from .test_ml_registry import (  # noqa: F401 (model_bytes is a fixture)
    DATA_CONFIG,
    add_version,
    churn_frame,
    configure,
    model_bytes,
)


def _filled(workspace, store, model_bytes, tmp_path):  # noqa: F811
    ws = configure(workspace, DATA_CONFIG)
    batch = tmp_path / "batch.csv"
    churn_frame(50, seed=1).write_csv(batch)
    assert ingest_file(ws, store, batch).status in ("accepted", "warned")
    add_version(ws, store, model_bytes["a"], metrics={"roc_auc": 0.8})
    registry.approve(store, "churn:1", reason="ok")
    registry.promote(store, "churn:1", reason="serve")
    return ws


def test_a_backup_taken_while_runs_are_written_is_a_whole_workspace(
    workspace,
    store,
    model_bytes,  # noqa: F811
    tmp_path,
):
    ws = _filled(workspace, store, model_bytes, tmp_path)
    before = queries.list_runs(store, limit=1)[1]  # written, most of it still in the WAL
    stop = threading.Event()

    def keep_writing() -> None:  # a script logging runs all along (its writes in the WAL)
        while not stop.is_set():
            with mldeck.start_run(name="sweep", workspace=ws.root) as run:
                run.log_metric("loss", 0.5)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        result = backup_workspace(ws, store, tmp_path / "copy")
    finally:
        stop.set()
        writer.join()
    copy = load_workspace(tmp_path / "copy")
    names = {p.name for p in copy.state_dir.iterdir()}
    assert "store.db" in names and not names & {"store.db-wal", "store.lock", "watcher.lock"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".copy.partial")]
    copied = open_store(copy.db_url)
    try:
        assert queries.integrity_check(copied) == "ok"
        assert audit.verify(copied).ok
        runs, total = queries.list_runs(copied, limit=1000)
        assert total == result.runs >= before  # the writer's runs too, as far as it got
        assert all(r.status == "succeeded" for r in runs if r.name == "sweep")
        assert registry.resolve(copied, "churn@champion").version == 1
        # Every file the copy's store names is in the copy, with its bytes.
        version = registry.resolve(copied, "churn:1")
        registry.load_version(copy, copied, version)
        assert result.missing == [] and result.dataset_versions == 1 == result.model_versions
    finally:
        copied.close()


def test_the_cli_backs_up_and_refuses_what_it_cannot_do(
    workspace,
    store,
    model_bytes,  # noqa: F811
    tmp_path,
    cli,
):
    ws = _filled(workspace, store, model_bytes, tmp_path)
    done = cli("backup", str(tmp_path / "b1"), "--json", cwd=ws.root)
    assert done.returncode == 0, done.stderr
    said = json.loads(done.stdout)
    assert (said["dataset_versions"], said["model_versions"]) == (1, 1)
    verified = cli("-w", str(tmp_path / "b1"), "audit", "verify", cwd=tmp_path)
    assert verified.returncode == 0 and "chain intact" in verified.stdout, verified.stderr
    shown = cli("-w", str(tmp_path / "b1"), "models", "show", "churn@champion", cwd=tmp_path)
    assert shown.returncode == 0 and "churn:1" in shown.stdout
    for destination, message in (
        (tmp_path / "b1", "already exists: name a new folder for the backup"),
        (ws.root / "inside", "is inside the workspace: put the backup elsewhere"),
        (tmp_path / "no" / "such", "is not a folder: create it first"),
    ):
        refused = cli("backup", str(destination), cwd=ws.root)
        assert refused.returncode != 0 and "Traceback" not in refused.stderr
        assert refused.stderr.strip().splitlines()[-1].endswith(message), refused.stderr
    assert not (ws.root / "inside").exists() and not (tmp_path / "no").exists()


def test_a_store_outside_the_workspace_is_refused_not_copied_half(workspace, tmp_path, cli):
    """The copy's mldeck.toml or environment would still name the original's store: a
    'backup' sharing the store with the workspace it was taken from."""
    elsewhere = {"MLDECK_DB_URL": f"sqlite:///{tmp_path / 'other.db'}"}
    refused = cli("backup", str(tmp_path / "copy"), cwd=workspace.root, env=elsewhere)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr, refused.stderr
    assert "named by MLDECK_DB_URL: a copy opened without it would use an empty" in refused.stderr
    assert not (tmp_path / "copy").exists()
    config = workspace.root / "mldeck.toml"
    settings = config.read_text()
    for url, said in ((tmp_path / "other.db", "is outside the workspace"),
                      (workspace.root / "meta.db", "names the store by an absolute path")):  # fmt: skip
        config.write_text(settings.replace('\nurl = ""\n', f'\nurl = "sqlite:///{url}"\n', 1))
        refused = cli("backup", str(tmp_path / "copy"), cwd=workspace.root)
        assert refused.returncode != 0 and said in refused.stderr, refused.stderr
        assert not (tmp_path / "copy").exists()


def test_a_store_named_relative_to_the_workspace_is_backed_up_where_the_copy_finds_it(
    workspace, tmp_path, cli
):
    """'[store] url = "sqlite:///meta.db"' (a SQLite file in the workspace's folder, as the
    README has it) was refused as "not a SQLite file in the workspace"."""
    config = workspace.root / "mldeck.toml"
    config.write_text(
        config.read_text().replace('\nurl = ""\n', '\nurl = "sqlite:///meta.db"\n', 1)
    )
    assert cli("runs", "list", cwd=workspace.root).returncode == 0  # the store is made
    with mldeck.start_run("kept", workspace=workspace.root) as run:
        run.log_metric("auc", 0.9)
    done = cli("backup", str(tmp_path / "copy"), "--json", cwd=workspace.root)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["runs"] == 1
    assert (tmp_path / "copy" / "meta.db").is_file()
    assert not (tmp_path / "copy" / "meta.db-wal").exists()
    listed = cli("-w", str(tmp_path / "copy"), "runs", "list", cwd=tmp_path)
    assert listed.returncode == 0 and "kept" in listed.stdout, listed.stderr
