"""Snapshots of each screen at 80x24 on a fixed, seeded store (update: pytest --snapshot-update)."""

from __future__ import annotations

from textual.pilot import Pilot

from mldeck.tui.screens.data import VersionDetailScreen
from mldeck.tui.screens.runs import RunDetailScreen

from .conftest import make_app, settle


def test_overview(snap_compare, fixed_seeded) -> None:
    assert snap_compare(make_app(*fixed_seeded), run_before=settle)


def test_runs(snap_compare, fixed_seeded) -> None:
    async def go(pilot: Pilot) -> None:
        await settle(pilot)
        await pilot.press("2")
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
