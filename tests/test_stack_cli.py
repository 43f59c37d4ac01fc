"""`ocsea stack`: the checkout's devstack/ behind the product's command line, and a product that
runs without it (an installed wheel or the image has no devstack)."""

from __future__ import annotations

import ast
import os
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ocsea.cli import app
from ocsea.stack_cli import use_local_stack_redis

REPO = Path(__file__).resolve().parents[1]
PRODUCT = ("ocsea", "services", "contracts")


def test_ocsea_stack_passes_its_arguments_to_devstack(tmp_path: Path) -> None:
    env = {"OCSEA_STACK_BASE_DIR": str(tmp_path), "OCSEA_STACK_REDIS_PORT": "16379"}
    result = CliRunner().invoke(app, ["stack", "env"], env=env)
    assert result.exit_code == 0, result.output
    assert "export OCSEA_REDIS_URL=redis://127.0.0.1:16379/0" in result.output
    helped = CliRunner().invoke(app, ["stack", "--help"])
    assert helped.exit_code == 0, helped.output
    assert all(command in helped.output for command in ("up", "down", "status", "reset", "env"))
    wrong = CliRunner().invoke(app, ["stack", "status", "--no-such-option"])
    assert wrong.exit_code == 2
    assert "No such option" in wrong.output


@pytest.fixture
def no_devstack(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in an installed wheel: the checkout (where devstack/ lives) is not on the path."""
    monkeypatch.setattr(sys, "path", [p for p in sys.path if Path(p or ".").resolve() != REPO])
    for name in [name for name in sys.modules if name.partition(".")[0] == "devstack"]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ModuleNotFoundError):
        import devstack  # noqa: F401


@pytest.mark.usefixtures("no_devstack")
def test_without_devstack_ocsea_stack_says_it_is_a_tool_of_the_checkout() -> None:
    result = CliRunner().invoke(app, ["stack", "status"])
    assert result.exit_code == 1
    assert "development tool of the ocsea checkout" in result.output
    assert "uv run ocsea stack" in result.output


@pytest.mark.usefixtures("no_devstack")
def test_without_devstack_a_local_run_leaves_the_redis_url_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OCSEA_REDIS_URL", raising=False)
    use_local_stack_redis()
    assert "OCSEA_REDIS_URL" not in os.environ


def test_a_broken_devstack_is_not_mistaken_for_a_missing_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delitem(sys.modules, "devstack.redis", raising=False)
    monkeypatch.setitem(sys.modules, "devstack.packages", None)  # what devstack.redis imports
    with pytest.raises(ModuleNotFoundError, match=r"devstack\.packages"):
        use_local_stack_redis()


def test_the_wheel_leaves_devstack_out_and_mypy_checks_it() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert set(config["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]) == set(PRODUCT)
    assert "devstack" in config["tool"]["mypy"]["packages"]


def _module_level_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_the_product_imports_devstack_only_when_ocsea_stack_runs() -> None:
    eager = sorted(
        str(path.relative_to(REPO))
        for package in PRODUCT
        for path in (REPO / package).rglob("*.py")
        if any(name.partition(".")[0] == "devstack" for name in _module_level_imports(path))
    )
    assert eager == []
