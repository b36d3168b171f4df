"""House rules checked by tools: lint, formatting, and the domain never importing the console."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{name} is not installed next to {sys.executable} (pip install -e '.[test]')")
    return str(path)


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def assert_clean(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, (
        f"{' '.join(result.args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    )


def test_ruff_check():
    assert_clean(run(tool("ruff"), "check", "."))


def test_ruff_format():
    assert_clean(run(tool("ruff"), "format", "--check", "."))


def test_import_contracts():
    assert_clean(run(tool("lint-imports"), "--no-cache"))


BLOCK_TEXTUAL = textwrap.dedent(
    """
    import sys

    class NoConsole:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("textual", "textual_plotext") or name.startswith(
                "mldeck.tui"
            ):
                raise ImportError(f"{name} is blocked: the domain must not need it")
            return None

    sys.meta_path.insert(0, NoConsole())

    import mldeck
    import mldeck.config
    import mldeck.errors
    import mldeck.formatting
    import mldeck.provenance
    import mldeck.store
    import mldeck.store.artifacts
    import mldeck.store.engine
    import mldeck.store.models
    import mldeck.store.queries
    import mldeck.tracking
    import mldeck.workspace

    try:
        import textual  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("the blocker did not block textual")
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("textual", "textual_plotext"))
    if loaded:
        raise SystemExit(f"textual got imported: {loaded}")
    print("domain imports without textual")
    """
)


def test_domain_imports_without_textual():
    result = run(sys.executable, "-c", BLOCK_TEXTUAL)
    assert_clean(result)
    assert "domain imports without textual" in result.stdout
