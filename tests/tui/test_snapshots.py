"""Snapshots of each screen at 80x24 on a fixed, seeded store (update: pytest --snapshot-update)."""

from __future__ import annotations

from pathlib import Path

from textual.pilot import Pilot

from mldeck.tui.screens.data import VersionDetailScreen
from mldeck.tui.screens.runs import RunCompareScreen, RunDetailScreen

from .conftest import T0, make_app, settle
from .test_models_screen import models_workspace


def test_overview(snap_compare, fixed_seeded) -> None:
    assert snap_compare(make_app(*fixed_seeded), run_before=settle)


def test_runs(snap_compare, fixed_seeded) -> None:
    async def go(pilot: Pilot) -> None:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)

    assert snap_compare(make_app(*fixed_seeded), run_before=go)


def test_runs_compared(snap_compare, fixed_seeded) -> None:
    async def go(pilot: Pilot) -> None:
        await settle(pilot)
        pilot.app.push_screen(RunCompareScreen([3, 4]))
        await settle(pilot)

    assert snap_compare(make_app(*fixed_seeded), run_before=go)


def test_run_detail_error(snap_compare, fixed_seeded) -> None:
    async def go(pilot: Pilot) -> None:
        await settle(pilot)
        pilot.app.push_screen(RunDetailScreen(4))
        await settle(pilot)
        await pilot.press("e")
        await settle(pilot)

    assert snap_compare(make_app(*fixed_seeded), run_before=go)


def test_run_detail_metrics(snap_compare, fixed_seeded) -> None:
    async def go(pilot: Pilot) -> None:
        await settle(pilot)
        pilot.app.push_screen(RunDetailScreen(3))
        await settle(pilot)
        await pilot.press("m")
        await settle(pilot)

    assert snap_compare(make_app(*fixed_seeded), run_before=go)


def test_help(snap_compare, fixed_seeded) -> None:
    async def go(pilot: Pilot) -> None:
        await settle(pilot)
        await pilot.press("question_mark")
        await settle(pilot)

    assert snap_compare(make_app(*fixed_seeded), run_before=go)


def test_data(snap_compare, data_seeded) -> None:
    async def go(pilot: Pilot) -> None:
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)

    assert snap_compare(make_app(*data_seeded), run_before=go)


def test_version_checks(snap_compare, data_seeded) -> None:
    async def go(pilot: Pilot) -> None:
        await settle(pilot)
        await pilot.press("3")
        await settle(pilot)
        await pilot.press("enter")  # the newest version: the rejected batch
        await settle(pilot)

    assert snap_compare(make_app(*data_seeded), run_before=go)


def test_version_profile(snap_compare, data_seeded) -> None:
    async def go(pilot: Pilot) -> None:
        await settle(pilot)
        pilot.app.push_screen(VersionDetailScreen(4))
        await settle(pilot)
        await pilot.press("p", "j", "j")
        await settle(pilot)

    assert snap_compare(make_app(*data_seeded), run_before=go)


def models_app(root: Path):
    """Two versions of churn (the second failed a gate), churn:1 the approved champion."""
    from mldeck.store.models import Alias, Approval

    workspace, store = models_workspace(root)
    with store.write() as session:
        session.add(Approval(model_version_id=1, decision="approved", user="ana",
                             reason="holdout looks good", created_at=T0))  # fmt: skip
        session.add(Alias(model_id=1, name="champion", model_version_id=1, updated_at=T0))
    return make_app(workspace, store)


def test_models(snap_compare, tmp_path) -> None:
    async def go(pilot: Pilot) -> None:
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)

    app = models_app(tmp_path / "ws")
    try:
        assert snap_compare(app, run_before=go)
    finally:
        app.store.close()


def test_model_version(snap_compare, tmp_path) -> None:
    async def go(pilot: Pilot) -> None:
        await settle(pilot)
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("enter")  # the newest version: churn:2, beside the champion churn:1
        await settle(pilot)

    app = models_app(tmp_path / "ws")
    try:
        assert snap_compare(app, run_before=go)
    finally:
        app.store.close()
