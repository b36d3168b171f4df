"""``mldeck.toml`` parsing and workspace discovery and creation."""

from __future__ import annotations

import os

import pytest

from mldeck.config import (
    CONFIG_FILE,
    ConsoleSettings,
    ProjectSettings,
    Settings,
    default_config_text,
    load_settings,
    parse_settings,
)
from mldeck.errors import ConfigError, MldeckError, WorkspaceNotFound
from mldeck.workspace import (
    discover,
    find_root,
    init_workspace,
    load_workspace,
    open_workspace_store,
)

# -- configuration ----------------------------------------------------------------------------


def test_default_config_round_trips(workspace):
    text = workspace.config_path.read_text(encoding="utf-8")
    assert text == default_config_text("test-project")
    assert load_settings(workspace.config_path) == Settings(
        project=ProjectSettings(name="test-project")
    )
    assert workspace.settings.console == ConsoleSettings()
    assert parse_settings("") == Settings()


def test_settings_are_read(tmp_path):
    text = """
[project]
name = "churn"
description = "weekly churn model"
[store]
url = "postgresql://u@db/mldeck"
[console]
theme = "mldeck-light"
refresh_seconds = 2
read_only = true
"""
    settings = parse_settings(text)
    assert settings.project.description == "weekly churn model"
    assert settings.store.url == "postgresql://u@db/mldeck"
    assert settings.console == ConsoleSettings(
        theme="mldeck-light", refresh_seconds=2.0, read_only=True
    )


def test_unknown_top_level_section_is_named():
    with pytest.raises(ConfigError) as err:
        parse_settings('[projekt]\nname = "x"\n', "cfg.toml")
    message = str(err.value)
    assert message.startswith("cfg.toml: ")
    assert "'projekt'" in message and "top level" in message
    assert "allowed: project, store, console" in message


def test_unknown_key_in_console_is_named():
    with pytest.raises(ConfigError) as err:
        parse_settings("[console]\nrefresh_secs = 2\n")
    message = str(err.value)
    assert "'refresh_secs'" in message and "[console]" in message
    assert "allowed: theme, refresh_seconds, read_only" in message
    assert "\n" not in message


def test_several_problems_are_counted():
    with pytest.raises(ConfigError, match=r"\(and 1 more\)"):
        parse_settings("[console]\nfoo = 1\nbar = 2\n")


def test_invalid_toml_reports_the_line():
    with pytest.raises(ConfigError) as err:
        parse_settings('[project]\nname = "x"\ndescription = \n', "mldeck.toml")
    message = str(err.value)
    assert "not valid TOML" in message
    assert "line 3" in message


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[console]\nrefresh_seconds = "fast"\n', "'refresh_seconds' in [console]"),
        ("[console]\nrefresh_seconds = 0.01\n", "'refresh_seconds' in [console]"),
        ('[console]\nread_only = "sometimes"\n', "'read_only' in [console]"),
        ('[project]\nname = ""\n', "'name' in [project]"),
        ("console = 3\n", "'console' in top level"),
    ],
)
def test_wrong_values_are_named(text, needle):
    with pytest.raises(ConfigError) as err:
        parse_settings(text)
    assert needle in str(err.value)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("[model]\ncv_folds = 1\n",
         "'cv_folds' in [model]: cross-validation needs at least 2 folds"),
        ('[jobs.schedules.t]\nkind = "train"\nevery = "0s"\n',
         "'every' in [jobs.schedules.t]: '0s' is no interval"),
        # A p-value of 1 divided by zero in the check (a traceback); above 1 flagged every batch.
        ('[monitor.columns.age]\nmethod = "ks"\nthreshold = 1\n',
         "'age' in [monitor.columns]: the threshold of ks is a p-value: between 0 and 1 (drifted "
         "when p < threshold), not 1"),
        # A NaN threshold no metric passes.
        ("[monitor.columns.age]\nthreshold = 0.2\n",
         "'age' in [monitor.columns]: a threshold needs its method: a p-value for ks or chi2, a "
         'score for wasserstein, psi or jensenshannon (method = "auto" switches between them)'),
    ],
)  # fmt: skip
def test_a_validator_s_sentence_is_said_without_pydantic_s_label(text, said):
    """Any section's refused value reads as its own sentence, not 'Value error, ...'."""
    with pytest.raises(ConfigError) as err:
        parse_settings(text)
    assert f"mldeck.toml: {said}" in str(err.value)
    assert "Value error" not in str(err.value)


RULE = '[[monitor.alerts]]\nname = "{name}"\nwhen = "{when}"\nmetric = "{metric}"\nbelow = 0.7\n'


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (RULE.format(name="auc", when="realized_metric", metric="roc_aucc"),
         "the 1st [[monitor.alerts]]: unknown metric 'roc_aucc' for a realized_metric rule (one "
         "of: roc_auc, accuracy, precision, recall, f1)"),
        (RULE.format(name="a", when="realized_metric", metric="f1")
         + RULE.format(name="b", when="estimated_metric", metric="accuracy"),
         "the 2nd [[monitor.alerts]] ('b') watches estimated accuracy, but a check estimates "
         "roc_auc ([model] primary_metric): it would never fire; use realized_metric for other "
         "metrics"),
        ("[monitor]\nmultivariate = false\n[[monitor.alerts]]\nname = 'joint'\n"
         "when = 'multivariate_drift'\n",
         "the 1st [[monitor.alerts]] ('joint') watches multivariate drift, which [monitor] "
         "multivariate = false turns off: it would never fire"),
        ("[monitor.columns.score]\nmonitor = false\n[[monitor.alerts]]\nname = 'scores'\n"
         "when = 'prediction_drift'\n",
         "the 1st [[monitor.alerts]] ('scores') watches prediction drift, which "
         "[monitor.columns.score] monitor = false turns off: it would never fire"),
        ('[[monitor.alerts]]\nname = "x"\nwhen = "freshness"\nhours = 24\nthreshold = 1\n',
         "unknown key 'threshold' in the 1st [[monitor.alerts]] (allowed: name, when, severity, "
         "feature, metric, below, hours, command, retrain)"),
    ],
)  # fmt: skip
def test_an_alert_rule_that_could_never_fire_is_refused(text, said):
    """A metric's typo was accepted and the rule never fired (a rule list replaces the
    defaults: the gap was silent); an unknown key listed no allowed keys."""
    with pytest.raises(ConfigError) as err:
        parse_settings(text)
    assert str(err.value) == f"mldeck.toml: {said}"


@pytest.mark.parametrize(
    ("text", "said"),
    [
        # loaded, then every drift, alert and health check failed on the default rule it made
        ("[gates]\nmin = {roc_auc = 75}\n",
         "'min' in [gates]: roc_auc = 75 is outside [0, 1]: roc_auc lies between 0 and 1 (70 % "
         "is 0.7)"),
        ("[gates]\nmax = {log_loss = -0.1}\n",
         "'max' in [gates]: log_loss = -0.1 is below 0: log_loss is never negative"),
        # true was a floor of 1 (every batch alerted), false a margin of 0
        ("[gates]\nmin = {roc_auc = true}\n", "'min' in [gates]: roc_auc: a number, not true"),
        ("[gates]\nmax_regression = {roc_auc = false}\n",
         "'max_regression' in [gates]: roc_auc: a number, not false"),
        # every candidate failed it: "rmse: not computed on this holdout"
        ("[gates]\nmin = {roc_auc = 0.75, rmse = 0.1}\n",
         "[gates] min names rmse, which a classification model does not compute ([model] task; "
         "its metrics: accuracy, precision, recall, f1, roc_auc, log_loss, brier)"),
        ('[model]\ntask = "regression"\n[gates]\nmax_regression = {roc_auc = 0.1}\n',
         "[gates] max_regression names roc_auc, which a regression model does not compute "
         "([model] task; its metrics: mae, rmse, r2)"),
        ('[model]\ntask = "regression"\n'
         + RULE.format(name="auc", when="realized_metric", metric="roc_auc"),
         "the 1st [[monitor.alerts]] ('auc') watches roc_auc, which a regression model does not "
         "compute ([model] task): it would never fire"),
    ],
)  # fmt: skip
def test_a_gate_no_model_could_meet_or_fail_is_refused(text, said):
    with pytest.raises(ConfigError) as err:
        parse_settings(text)
    assert str(err.value) == f"mldeck.toml: {said}"


@pytest.mark.parametrize(
    ("text", "said"),
    [
        # every batch was rejected: "min needs numbers but the column is string (... declare
        # type = "float")", advice contradicting the declaration
        ('[data.columns.plan]\ntype = "string"\nmin = 3\nmax = 4\n',
         "'plan' in [data.columns]: min and max bound numbers, and the column is declared "
         "type = 'string'"),
        ('[data.columns.plan]\ntype = "date"\nmin = 3\n',
         "'plan' in [data.columns]: min bounds numbers, and the column is declared type = 'date'"),
        # the check was skipped: batches of any age accepted
        ("[data.table]\nmax_age_days = 1\n",
         "[data.table] max_age_days needs [data] timestamp_column, the column a batch's age is "
         "read from"),
    ],
)  # fmt: skip
def test_data_expectations_no_batch_could_meet_as_written_are_refused(text, said):
    with pytest.raises(ConfigError) as err:
        parse_settings(text)
    assert str(err.value) == f"mldeck.toml: {said}"


def test_a_null_share_beside_nullable_false_is_taken_as_documented():
    """max_null_fraction above 0 implies nullable: a file 'data infer' wrote (nullable = false)
    and a share added later keeps loading."""
    settings = parse_settings("[data.columns.total]\nnullable = false\nmax_null_fraction = 0.5\n")
    assert settings.data.columns["total"].max_null_fraction == 0.5


def test_a_floor_on_a_metric_no_rule_watches_makes_no_default_rule():
    """A floor on log_loss (or a regression's r2) became a rule no check could evaluate: every
    drift check, alert check and health check failed, and the daemon's pipeline with them."""
    from mldeck.monitor import alerts

    for text in ('[model]\nprimary_metric = "log_loss"\n[gates]\nmin = {log_loss = 0.1}\n',
                 '[model]\ntask = "regression"\nprimary_metric = "r2"\n[gates]\n'
                 "min = {r2 = 0.5}\n"):  # fmt: skip
        rules = alerts.default_rules(parse_settings(text))
        assert [r.when for r in rules] == ["dataset_drift", "multivariate_drift", "failed_run"]
    # nor does drift turned off (the rule would never fire)
    rules = alerts.default_rules(parse_settings("[monitor]\nmultivariate = false\n"))
    assert "multivariate_drift" not in {r.when for r in rules}


def test_an_estimated_metric_rule_on_the_primary_metric_is_taken():
    text = '[model]\nprimary_metric = "accuracy"\n' + RULE.format(
        name="acc", when="estimated_metric", metric="accuracy"
    )
    (rule,) = parse_settings(text).monitor.alerts
    assert rule.metric == "accuracy"


@pytest.mark.parametrize(
    ("text", "said"),
    [
        # NaN was refused as out of bounds ("less than or equal to 60"), which it is not.
        ("[console]\nrefresh_seconds = nan\n",
         "'refresh_seconds' in [console]: Input should be a finite number"),
        ("[gates]\nmin = {roc_auc = nan}\n",  # no metric passes (or fails) it
         "'roc_auc' in [gates.min]: Input should be a finite number"),
        ("[data]\nsettle_seconds = inf\n",
         "'settle_seconds' in [data]: Input should be a finite number"),
        # Durations that overflowed Python's dates: a traceback in every check and health check.
        ('[[monitor.alerts]]\nname = "never"\nwhen = "freshness"\nhours = inf\n',
         "'hours' in the 1st [[monitor.alerts]]: Input should be a finite number"),
        ('[[monitor.alerts]]\nname = "never"\nwhen = "freshness"\nhours = 1e12\n',
         "'hours' in the 1st [[monitor.alerts]]: Input should be less than or equal to 87840"),
        ("[jobs]\nstale_run_seconds = 1e15\n",
         "'stale_run_seconds' in [jobs]: Input should be less than or equal to 316224000"),
        ("[jobs]\ndata_stale_hours = 1e12\n",
         "'data_stale_hours' in [jobs]: Input should be less than or equal to 87840"),
        ("[jobs]\nmax_consecutive_failures = 9223372036854775807\n",  # a crash in SQLite
         "'max_consecutive_failures' in [jobs]: Input should be less than or equal to 1000"),
        # Taken by pydantic's lax reading: true as 1 retry, "no" as false.
        ('[jobs.schedules.t]\nkind = "health"\nevery = "1h"\nretries = true\n',
         "'retries' in [jobs.schedules.t]: a number, not true"),
        ('[jobs.schedules.t]\nkind = "health"\nevery = "1h"\nenabled = "no"\n',
         "'enabled' in [jobs.schedules.t]: true or false, not 'no'"),
        ("[data.table]\nmax_age_days = 1e9\n",
         "'max_age_days' in [data.table]: Input should be less than or equal to 3660"),
    ],
)  # fmt: skip
def test_values_not_finite_too_long_or_of_another_type_are_refused(text, said):
    with pytest.raises(ConfigError) as err:
        parse_settings(text)
    assert str(err.value) == f"mldeck.toml: {said}"


def test_a_whole_number_written_as_a_decimal_is_taken():
    """Checking types strictly refused `timeout_seconds = 7200.0` and `max_rows = 1e6`."""
    settings = parse_settings(
        '[data.table]\nmax_rows = 1e6\n[jobs.schedules.t]\nkind = "health"\nevery = "1h"\n'
        "timeout_seconds = 7200.0\n"
    )
    assert settings.data.table.max_rows == 1_000_000
    assert settings.jobs.schedules["t"].timeout_seconds == 7200


def test_a_config_saved_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / CONFIG_FILE
    path.write_bytes(b'\xef\xbb\xbf[project]\nname = "bom"\n')
    assert load_settings(path).project.name == "bom"


def test_non_utf8_config(tmp_path):
    path = tmp_path / CONFIG_FILE
    path.write_bytes(b'[project]\nname = "caf\xe9"\n')
    with pytest.raises(ConfigError, match=r"not UTF-8 text \(byte 21\)"):
        load_settings(path)


def test_unreadable_config_is_a_config_error(tmp_path):
    path = tmp_path / CONFIG_FILE
    path.mkdir()  # a folder cannot be read as a file, not even by root
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.toml")


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="root reads files whatever their mode; the folder case above covers root",
)
def test_config_without_read_permission(workspace):
    workspace.config_path.chmod(0)
    try:
        with pytest.raises(ConfigError, match="Permission denied"):
            load_workspace(workspace.root)
    finally:
        workspace.config_path.chmod(0o644)


def test_bad_config_stops_workspace_loading(workspace):
    workspace.config_path.write_text("[console]\ncolour = 'red'\n")
    with pytest.raises(ConfigError, match="unknown key 'colour'"):
        load_workspace(workspace.root)


# -- discovery --------------------------------------------------------------------------------


def test_discovery_from_a_nested_folder(workspace):
    nested = workspace.root / "data" / "incoming" / "deeper"
    nested.mkdir()
    assert find_root(nested) == workspace.root
    found = discover(cwd=nested)
    assert found.root == workspace.root
    assert found.name == "test-project"


def test_a_workspace_that_lost_its_config_says_so_not_its_parent_or_init(workspace):
    """Inside another workspace it was silently the outer one; alone, the advice was 'mldeck
    init', which refuses a folder holding .mldeck; a folder named mldeck.toml read as none."""
    inner = init_workspace(workspace.root / "inner", name="inner")
    inner.config_path.unlink()
    assert find_root(inner.root / "data") == inner.root
    for found in (lambda: discover(cwd=inner.root / "data"), lambda: load_workspace(inner.root)):
        with pytest.raises(WorkspaceNotFound) as lost:
            found()
        assert str(lost.value) == (
            f"{inner.root} has lost its mldeck.toml (its records are in {inner.root / '.mldeck'}): "
            "restore the file (a backup, version control), or write one anew with the settings "
            "it had"
        )
    inner.config_path.mkdir()
    with pytest.raises(WorkspaceNotFound, match=r"mldeck\.toml is a folder, not the workspace's "):
        discover(cwd=inner.root)


def test_discovery_from_the_current_folder(workspace, monkeypatch):
    monkeypatch.chdir(workspace.root / "data")
    assert discover().root == workspace.root


def test_discovery_via_environment(workspace, monkeypatch, tmp_path):
    monkeypatch.setenv("MLDECK_WORKSPACE", str(workspace.root))
    assert discover(cwd=tmp_path).root == workspace.root


def test_explicit_path_wins_over_environment(workspace, monkeypatch, tmp_path):
    other = init_workspace(tmp_path / "other", name="other")
    monkeypatch.setenv("MLDECK_WORKSPACE", str(other.root))
    assert discover(workspace.root).name == "test-project"
    assert discover(str(workspace.root)).name == "test-project"
    assert discover().name == "other"


def test_environment_wins_over_current_folder(workspace, monkeypatch, tmp_path):
    other = init_workspace(tmp_path / "other", name="other")
    monkeypatch.setenv("MLDECK_WORKSPACE", str(other.root))
    assert discover(cwd=workspace.root).name == "other"


def test_relative_explicit_path(workspace, monkeypatch):
    monkeypatch.chdir(workspace.root.parent)
    found = discover(workspace.root.name)
    assert found.root == workspace.root and found.root.is_absolute()


@pytest.mark.parametrize("via", ["explicit", "env"])
def test_nonexistent_workspace_path(tmp_path, monkeypatch, via):
    missing = tmp_path / "does" / "not" / "exist"
    if via == "env":
        monkeypatch.setenv("MLDECK_WORKSPACE", str(missing))
        call = discover
    else:

        def call():
            return discover(missing)

    with pytest.raises(WorkspaceNotFound, match="does not exist") as err:
        call()
    assert str(missing) in str(err.value)


def test_outside_any_workspace_suggests_init(tmp_path):
    with pytest.raises(WorkspaceNotFound) as err:
        discover(cwd=tmp_path)
    message = str(err.value)
    assert "mldeck init" in message and "--workspace" in message
    assert "\n" not in message


def test_folder_without_config_suggests_init(tmp_path):
    with pytest.raises(WorkspaceNotFound, match="mldeck init"):
        discover(tmp_path)


def test_a_folder_inside_a_workspace_names_that_workspace_not_init(workspace):
    """'mldeck -w data/incoming …' meant the workspace around it: creating one there would
    have the outer watcher take its mldeck.toml."""
    with pytest.raises(WorkspaceNotFound) as err:
        discover(workspace.incoming_dir)
    assert str(err.value) == (
        f"{workspace.incoming_dir} is a folder inside the workspace {workspace.root}, not a "
        f"workspace (pass --workspace {workspace.root})"
    )


def test_file_instead_of_folder(tmp_path):
    path = tmp_path / "file.txt"
    path.write_text("x")
    with pytest.raises(WorkspaceNotFound, match="not a folder"):
        discover(path)


# -- init -------------------------------------------------------------------------------------


def test_init_creates_the_layout(tmp_path):
    ws = init_workspace(tmp_path / "new" / "project")
    assert ws.root == (tmp_path / "new" / "project").resolve()
    assert ws.name == "project"
    assert ws.config_path.is_file()
    assert ws.artifacts_dir.is_dir()
    assert ws.incoming_dir.is_dir()
    assert (ws.state_dir / ".gitignore").read_text() == "*\n"
    assert not ws.db_path.exists()  # the store is created on first open
    store = open_workspace_store(ws)
    try:
        assert ws.db_path.is_file()
        assert store.sqlite_path == ws.db_path
    finally:
        store.close()


def test_init_refuses_an_existing_workspace(workspace, store, file_state):
    with store.write():
        pass
    store.close()
    files = [workspace.config_path, workspace.db_path, workspace.state_dir / ".gitignore"]
    before = [file_state(f) for f in files]
    with pytest.raises(MldeckError, match="already an mldeck workspace"):
        init_workspace(workspace.root, name="other")
    assert [file_state(f) for f in files] == before


def test_init_refuses_a_state_folder_without_config(tmp_path):
    (tmp_path / "ws" / ".mldeck").mkdir(parents=True)
    with pytest.raises(MldeckError, match=r"\.mldeck exists"):
        init_workspace(tmp_path / "ws")
    assert not (tmp_path / "ws" / CONFIG_FILE).exists()


@pytest.mark.parametrize("inside", ["data/incoming", "data", ".mldeck/artifacts/x"])
def test_init_refuses_a_folder_a_workspace_owns(workspace, inside):
    target = workspace.root / inside
    with pytest.raises(MldeckError, match=f"it is inside the {inside.split('/')[0]}/ folder of "):
        init_workspace(target)
    assert not (target / CONFIG_FILE).exists()


def test_init_inside_a_workspace_elsewhere_is_allowed(workspace):
    """A project folder may hold several workspaces: only its data/ and .mldeck/ are taken."""
    assert init_workspace(workspace.root / "experiments" / "b").root.parent.name == "experiments"


def test_init_refuses_a_file(tmp_path):
    path = tmp_path / "taken"
    path.write_text("x")
    with pytest.raises(MldeckError, match="it is a file"):
        init_workspace(path)


@pytest.mark.parametrize(
    "name",
    [
        'He said "hi" \\ bye',
        "ünïcødé 模型 🚀",
        "tab\tand 'single' quotes",
        "line\nbreak",
        "delete\x7fchar",
    ],
)
def test_project_name_round_trips(tmp_path, name):
    ws = init_workspace(tmp_path / "ws", name=name)
    assert ws.name == name
    assert load_workspace(ws.root).name == name


def test_long_folder_name_gives_a_valid_default_name(tmp_path):
    root = tmp_path / ("m" * 150)
    ws = init_workspace(root)
    assert ws.name == "m" * 100
    assert load_workspace(root).name == "m" * 100


def test_invalid_project_name_leaves_nothing_behind(tmp_path):
    root = tmp_path / "ws"
    with pytest.raises(ConfigError, match="at most 100 characters"):
        init_workspace(root, name="n" * 101)
    assert not root.exists()


@pytest.mark.parametrize("folder", ["with?question", "with%20percent", "with#hash", "with space"])
def test_store_path_with_url_characters(tmp_path, folder):
    ws = init_workspace(tmp_path / folder)
    store = open_workspace_store(ws)
    try:
        assert store.sqlite_path == ws.db_path
        assert ws.db_path.is_file()
        assert sorted(p.name for p in tmp_path.iterdir()) == [folder]
    finally:
        store.close()


def test_store_url_precedence(workspace, monkeypatch, tmp_path):
    assert workspace.db_url.endswith("/.mldeck/store.db")
    workspace.config_path.write_text(f'[store]\nurl = "sqlite:///{tmp_path}/configured.db"\n')
    configured = load_workspace(workspace.root)
    assert configured.db_url == f"sqlite:///{tmp_path}/configured.db"
    monkeypatch.setenv("MLDECK_DB_URL", f"sqlite:///{tmp_path}/env.db")
    assert configured.db_url == f"sqlite:///{tmp_path}/env.db"
    store = open_workspace_store(configured)
    try:
        assert store.sqlite_path == tmp_path / "env.db"
    finally:
        store.close()
    assert not workspace.db_path.exists()


def test_a_relative_sqlite_store_url_is_in_the_workspace_folder_wherever_the_command_runs(
    workspace, monkeypatch
):
    workspace.config_path.write_text('[store]\nurl = "sqlite:///meta.db"\n')
    (workspace.root / "scripts").mkdir()
    monkeypatch.chdir(workspace.root / "scripts")
    store = open_workspace_store(load_workspace(workspace.root))
    try:
        assert store.sqlite_path == workspace.root / "meta.db"
    finally:
        store.close()
    assert not (workspace.root / "scripts" / "meta.db").exists()
    # An in-memory store stays one.
    workspace.config_path.write_text('[store]\nurl = "sqlite://"\n')
    assert load_workspace(workspace.root).db_url == "sqlite://"


def test_missing_state_folder(workspace):
    (workspace.state_dir / ".gitignore").unlink()
    for path in sorted(workspace.state_dir.rglob("*"), reverse=True):
        path.rmdir()
    workspace.state_dir.rmdir()
    with pytest.raises(MldeckError, match="missing"):
        open_workspace_store(workspace)


def test_settings_are_frozen():
    settings = Settings()
    with pytest.raises(Exception, match="frozen"):
        settings.console.theme = "other"  # type: ignore[misc]


def test_folder_name_that_is_not_utf8(tmp_path):
    root = tmp_path / os.fsdecode(b"caf\xe9")
    ws = init_workspace(root)
    assert ws.name == "caf\ufffd"
    assert load_workspace(root).name == "caf\ufffd"
    with pytest.raises(MldeckError, match="not valid text"):
        init_workspace(tmp_path / "other", name=os.fsdecode(b"bad\xff"))
    assert not (tmp_path / "other").exists()


def test_a_store_missing_beside_the_files_it_recorded_is_not_silently_recreated(
    workspace, tmp_path
):
    from mldeck.data.ingest import ingest_file

    store = open_workspace_store(workspace)
    data = tmp_path / "a.csv"
    data.write_text("a,b\n1,2\n")
    ingest_file(workspace, store, data)
    store.close()
    workspace.db_path.rename(tmp_path / "elsewhere.db")
    for suffix in ("-wal", "-shm"):
        workspace.db_path.with_name("store.db" + suffix).unlink(missing_ok=True)
    with pytest.raises(MldeckError, match=r"store .* is missing while .*datasets holds files"):
        open_workspace_store(workspace)
    assert not workspace.db_path.exists()
    # A workspace made with MLDECK_DB_URL, opened without it: the way back is said too.
    with pytest.raises(MldeckError, match=r"if this workspace's store is a database, set "
                                          r"MLDECK_DB_URL \(or \[store\] url in mldeck.toml\)"):  # fmt: skip
        open_workspace_store(workspace)
    workspace.db_path.touch()  # a copy cut short: no more a store than no file, and said so
    with pytest.raises(MldeckError, match=r"store .* is empty \(0 bytes\) while .*datasets"):
        open_workspace_store(workspace)
    assert workspace.db_path.stat().st_size == 0
    assert not list(workspace.state_dir.glob("store.db-*"))  # left untouched: no WAL beside it
    workspace.db_path.unlink()
    # The way out it names works: with those folders moved away, a new store is made.
    for folder in (workspace.datasets_dir, workspace.artifacts_dir):
        folder.rename(tmp_path / f"old-{folder.name}")
    open_workspace_store(workspace).close()
    assert workspace.db_path.exists()
    # A workspace whose state holds no recorded files (a fresh clone) gets a new store.
    fresh = init_workspace(tmp_path / "fresh")
    fresh.db_path.unlink(missing_ok=True)
    open_workspace_store(fresh).close()
    assert fresh.db_path.exists()


def test_a_second_workspace_is_refused_a_database_store_another_one_recorded_files_in(
    tmp_path, monkeypatch
):
    """The same database URL given to a second workspace: its init said "Created" and it then
    listed, scored and changed the first one's records, whose files live in the first."""
    from mldeck.data.ingest import ingest_file
    from mldeck.workspace import create_workspace_store

    monkeypatch.setenv("MLDECK_DB_URL", f"sqlite:///{tmp_path / 'shared.db'}")
    first, store = create_workspace_store(tmp_path / "first")
    data = tmp_path / "a.csv"
    data.write_text("a,b\n1,2\n")
    ingest_file(first, store, data)
    store.close()
    with pytest.raises(MldeckError, match=r"the store sqlite:///.*shared\.db records 1 file\(s\) "
                                          r"that .* do not hold: it is another workspace's "
                                          r"\(each workspace needs a database, or schema, of "
                                          r"its own.*or this workspace's files were moved away"):  # fmt: skip
        create_workspace_store(tmp_path / "second")
    assert not (tmp_path / "second").exists()  # nothing half made
    open_workspace_store(first).close()  # the workspace that made it still opens it
    # An empty database is anyone's: a third workspace gets a store of its own there.
    monkeypatch.setenv("MLDECK_DB_URL", f"sqlite:///{tmp_path / 'other.db'}")
    create_workspace_store(tmp_path / "third")[1].close()


def test_a_first_batch_stored_while_the_store_opens_is_not_taken_for_anothers(
    tmp_path, monkeypatch
):
    """Its watcher or a job storing the workspace's first file between the look at its folders
    and the count of the store's records: the open was refused as another workspace's."""
    import mldeck.workspace as workspace_module
    from mldeck.data.ingest import ingest_file
    from mldeck.workspace import create_workspace_store

    monkeypatch.setenv("MLDECK_DB_URL", f"sqlite:///{tmp_path / 'own.db'}")
    ws, store = create_workspace_store(tmp_path / "ws")
    store.close()
    data = tmp_path / "a.csv"
    data.write_text("a,b\n1,2\n")
    opened = workspace_module.open_store

    def open_while_a_batch_comes(*args, **kwargs):
        store = opened(*args, **kwargs)
        ingest_file(ws, store, data)  # what another process of the workspace did meanwhile
        return store

    monkeypatch.setattr(workspace_module, "open_store", open_while_a_batch_comes)
    open_workspace_store(ws).close()
