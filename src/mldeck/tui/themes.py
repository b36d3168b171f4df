"""Themes are TOML files users edit: the built-in ones, then a workspace's own ``themes/`` folder.

A file gives Textual's base colours plus mldeck's status variables (``status-failed``,
``champion``, ...). A broken file is skipped with a readable reason, never a crash.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import fields
from pathlib import Path

from textual.color import Color, ColorParseError
from textual.theme import Theme

import mldeck

DEFAULT_THEME = "mldeck-dark"
STATUS_VARIABLES = (
    "status-succeeded",
    "status-running",
    "status-queued",
    "status-failed",
    "status-orphaned",
    "status-warning",
    "status-muted",
    "champion",
)
_COLOR_FIELDS = (
    "primary", "secondary", "warning", "error", "success", "accent", "foreground", "background",
    "surface", "panel", "boost",
)  # fmt: skip
_ALLOWED = {f.name for f in fields(Theme)} - {"luminosity_spread", "text_alpha"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.-]{0,39}")


def builtin_theme_dir() -> Path:
    """Where the shipped themes are: inside the installed package, or the source tree's themes/."""
    packaged = Path(mldeck.__file__).parent / "_themes"
    if packaged.is_dir():
        return packaged
    return Path(mldeck.__file__).resolve().parents[2] / "themes"


def load_theme_file(path: Path) -> Theme:
    """Read one theme file; raise ValueError with a reason a user can act on."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path.name}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path.name} is not valid TOML: {exc}") from None
    unknown = sorted(set(raw) - _ALLOWED)
    if unknown:
        raise ValueError(f"{path.name}: unknown key {unknown[0]!r}")
    if not isinstance(raw.get("name"), str) or not raw["name"]:
        raise ValueError(f"{path.name}: 'name' is required")
    if not _NAME.fullmatch(raw["name"]):
        # Textual's theme picker reads names as markup: '[prod]' would vanish, '[/x' stop it.
        raise ValueError(
            f"{path.name}: name {raw['name']!r} may hold only letters, digits, spaces and - _ . "
            "(at most 40, starting with a letter or digit)"
        )
    if "primary" not in raw:
        raise ValueError(f"{path.name}: 'primary' is required")
    variables = raw.get("variables", {})
    if not isinstance(variables, dict):
        raise ValueError(f"{path.name}: [variables] must be a table")
    for key in _COLOR_FIELDS:
        if key in raw:
            _check_color(path, key, raw[key])
    for key, value in variables.items():
        if key in STATUS_VARIABLES:
            _check_color(path, key, value)
        else:  # Textual's own: a bad value would stop its stylesheet, and the console with it
            _check_variable(path, str(key), value)
    return Theme(**{**raw, "variables": {str(k): str(v) for k, v in variables.items()}})


def _check_variable(path: Path, key: str, value: object) -> None:
    """A Textual variable: text-style flags for a ``*-style``, else a colour as Textual's CSS
    takes it (``#f80``, ``red 50%``, ``auto 87%``, ``initial``)."""
    from textual.css.constants import VALID_STYLE_FLAGS

    text = str(value).strip()
    if key.endswith("-style"):
        if not text or any(word not in VALID_STYLE_FLAGS for word in text.split()):
            raise ValueError(
                f"{path.name}: {key} = {value!r} is not a text style (words from: "
                f"{', '.join(sorted(VALID_STYLE_FLAGS))})"
            )
        return
    if text == "initial" or re.fullmatch(r"auto( \d{1,3}%)?", text):
        return
    _check_color(path, key, re.sub(r" \d{1,3}%$", "", text))


def _check_color(path: Path, key: str, value: object) -> None:
    try:
        Color.parse(str(value))
    except ColorParseError:
        raise ValueError(f"{path.name}: {key} = {value!r} is not a colour") from None


def discover_themes(workspace_themes: Path | None) -> tuple[list[Theme], list[str]]:
    """All loadable themes (workspace files override built-ins of the same name) and the problems."""
    themes: dict[str, Theme] = {}
    problems: list[str] = []
    for folder in (builtin_theme_dir(), workspace_themes):
        if folder is None or not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.toml")):
            try:
                theme = load_theme_file(path)
            except ValueError as exc:
                problems.append(f"theme skipped: {exc}")
                continue
            themes[theme.name] = theme
    return list(themes.values()), problems
