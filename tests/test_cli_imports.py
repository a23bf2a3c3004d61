"""Imports between the command lines and the worker modules run one way (issue 17).

Every import counts, including those inside functions: a lazy import is still a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(module: str) -> set[str]:
    path = ROOT / (module.replace(".", "/") + ".py")
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_sub_clis_do_not_import_the_root_cli() -> None:
    for module in ("labeling.cli", "workers.cli", "app.db.schema_check", "app.errors", "app.cli_support"):
        assert "app.cli" not in imported_modules(module), module


def test_celery_app_does_not_import_submit() -> None:
    for module in ("workers.celery_app", "workers.dispatch"):
        imports = imported_modules(module)
        assert "workers.submit" not in imports, module
    assert "workers.celery_app" not in imported_modules("workers.dispatch")


def test_errors_module_imports_nothing_from_the_project() -> None:
    project = ("app", "workers", "labeling", "training")
    assert not {m for m in imported_modules("app.errors") if m.split(".")[0] in project}


def test_modules_import_in_any_order() -> None:
    import importlib
    import subprocess
    import sys

    for first in ("workers.submit", "workers.celery_app", "labeling.cli", "workers.cli", "app.cli"):
        code = f"import importlib; importlib.import_module({first!r}); import app.cli"
        done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
    assert importlib.import_module("app.cli").ensure_schema is importlib.import_module("app.db.schema_check").ensure_schema
