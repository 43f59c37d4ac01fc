"""The codebase's shape, checked: every service the same six names, no module over 600 lines,
no service importing another, and domain rules free of transport and storage.

See the README's architecture section for what each name holds.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SERVICES = sorted(
    p.name for p in (REPO / "services").iterdir() if p.is_dir() and (p / "__init__.py").exists()
)
MAX_LINES = 600

# The six names: `handlers` may be a module or a package when a service has many use cases.
SHAPE = ("domain/", "handlers", "ports.py", "adapters/", "entrypoints/", "bootstrap.py")
# Beside the six, a service's top level holds only its settings and its packaged data files.
ALSO_ALLOWED = {"__init__.py", "config.py"}
# What a domain module may not import: rules are functions of their inputs.
TRANSPORT_AND_STORAGE = (
    "fastapi",
    "starlette",
    "faststream",
    "aiokafka",
    "redis",
    "sqlalchemy",
    "asyncpg",
    "psycopg",
    "sqlite3",
    "httpx",
    "prometheus_client",
    "opentelemetry",
    "ocsea.runtime",
)


def _modules(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_shows_the_six_names(service: str) -> None:
    root = REPO / "services" / service
    missing = []
    for name in SHAPE:
        if name.endswith("/"):
            present = (root / name / "__init__.py").exists()
        elif name == "handlers":
            present = (root / "handlers.py").exists() or (root / "handlers/__init__.py").exists()
        else:
            present = (root / name).exists()
        if not present:
            missing.append(name)
    assert missing == [], f"services/{service} lacks {missing}"
    entrypoints = {p.name for p in (root / "entrypoints").glob("*.py")} - {"__init__.py"}
    assert entrypoints, f"services/{service}/entrypoints has no entry point"
    allowed = ALSO_ALLOWED | {"bootstrap.py", "handlers.py", "ports.py"}
    stray = sorted(p.name for p in root.glob("*.py") if p.name not in allowed)
    assert stray == [], f"services/{service} has modules outside the shape: {stray}"


def test_no_module_is_over_600_lines() -> None:
    long = {
        str(path.relative_to(REPO)): lines
        for root in ("services", "ocsea")
        for path in _modules(REPO / root)
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


@pytest.mark.parametrize("service", SERVICES)
def test_no_service_imports_another(service: str) -> None:
    crossing = {
        f"{path.relative_to(REPO)} imports {module}"
        for path in _modules(REPO / "services" / service)
        for module in _imports(path)
        if module.startswith("services.") and not module.startswith(f"services.{service}")
    }
    assert crossing == set()


@pytest.mark.parametrize("service", SERVICES)
def test_domain_imports_no_transport_or_storage(service: str) -> None:
    domain = REPO / "services" / service / "domain"
    own_outer = tuple(
        f"services.{service}.{layer}"
        for layer in ("adapters", "entrypoints", "handlers", "bootstrap", "ports")
    )
    impure = {
        f"{path.relative_to(REPO)} imports {module}"
        for path in _modules(domain)
        for module in _imports(path)
        if module.startswith(TRANSPORT_AND_STORAGE) or module.startswith(own_outer)
    }
    assert impure == set()


def test_the_kernels_import_no_service() -> None:
    crossing = {
        f"{path.relative_to(REPO)} imports {module}"
        for root in ("contracts", "ocsea/runtime")
        for path in _modules(REPO / root)
        for module in _imports(path)
        if module.startswith("services")
    }
    assert crossing == set()


def _imported_names(path: Path) -> set[str]:
    """Every module a file imports, and for `from a import b` also `a.b` (b may be a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def test_helpers_are_shared_through_testkit_never_through_a_test_module() -> None:
    """Benchmarks, drills and testkit itself import nothing from tests/, and no test module
    imports another test module: what two of them share lives in testkit/."""
    from_tests = {
        f"{path.relative_to(REPO)} imports {module}"
        for root in ("bench", "drills", "testkit")
        for path in _modules(REPO / root)
        for module in _imported_names(path)
        if module == "tests" or module.startswith("tests.")
    }
    test_modules = {
        ".".join(path.relative_to(REPO).with_suffix("").parts)
        for path in _modules(REPO / "tests")
        if path.name.startswith("test_")
    }
    between_tests = {
        f"{path.relative_to(REPO)} imports {module}"
        for path in _modules(REPO / "tests")
        for module in _imported_names(path) & test_modules
    }
    assert from_tests | between_tests == set()
