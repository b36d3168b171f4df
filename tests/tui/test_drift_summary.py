"""The Drift screen's summary lines at 80x24 on a real store: what a report scored, and the
sentence shown before any report."""

from __future__ import annotations

from datetime import timedelta

from mldeck.monitor import check_batch
from mldeck.store.engine import Store
from mldeck.store.models import Alias, ModelVersion, RegisteredModel
from mldeck.tui.screens.drift import DriftScreen

from .conftest import T0, make_app, settle, until

SIZE = (80, 24)


def promote_a_champion(store: Store) -> None:
    """churn:1 made champion (the registry's rows; no model file is needed to name it)."""
    with store.write() as session:
        model = RegisteredModel(name="churn", created_at=T0)
        session.add(model)
        session.flush()
        version = ModelVersion(model_id=model.id, version=1, created_at=T0)
        session.add(version)
        session.flush()
        session.add(Alias(model_id=model.id, name="champion", model_version_id=version.id,
                          updated_at=T0 + timedelta(hours=1)))  # fmt: skip


def summary_lines(app) -> list[str]:
    summary = app.screen.query_one("#drift-summary")
    return [strip.text for strip in summary.render_lines(summary.region.reset_offset)]


def model_line(app) -> str:
    """The summary's line about the model (after the batch's, which may take two lines)."""
    return next(line.strip() for line in summary_lines(app) if "champion" in line)


async def test_a_report_made_before_any_champion_says_so_once_one_is_promoted(data_seeded):
    """A batch checked with no champion was scored by no model: the summary says that of the
    report ('no champion' read as the registry now was false once one was promoted) and, once
    there is one, which champion a re-check (c) would score it with."""
    workspace, store = data_seeded
    check_batch(workspace, store, 2)  # no champion yet: features only
    app = make_app(workspace, store)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        await settle(pilot)
        assert isinstance(app.screen, DriftScreen)
        second = model_line(app)
        assert second == "no champion when checked: features only", second
        promote_a_champion(store)
        await until(pilot, lambda: "churn:1" in model_line(app))
        second = model_line(app)
        assert second == "no champion when checked: features only · c re-checks with churn:1"
        assert str(app.screen.query_one("TopBar").render()).endswith("churn:1")


async def test_the_sentence_before_any_report_is_whole_at_80_columns(data_seeded) -> None:
    """No report yet: how to make one is said whole on the summary's two lines, not cut."""
    app = make_app(*data_seeded)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        await settle(pilot)
        lines = summary_lines(app)
        said = " ".join(line.strip() for line in lines)
        assert said.startswith("No batch has been checked for drift yet"), lines
        assert said.endswith("run 'mldeck drift check BATCH'."), lines
        assert "…" not in said
