"""Imports run downhill: the layering the README's "Layout" section states, checked on every module.

A venue's connector module owns its vocabulary and never imports its standardiser; the pure book
engine (``l3_atom/books/``) and the Avro toolkit (``l3_atom/avro/``) import nothing above themselves.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "l3_atom"
# package folder -> the l3_atom modules its code may import (itself always)
ALLOWED = {
    "books": ("l3_atom.books",),
    "avro": ("l3_atom.avro", "l3_atom.errors"),
}
FORBIDDEN_IN_CONNECTORS = "l3_atom.stream_processing"


def imported_modules(path: Path) -> list[str]:
    """Every module a file imports, at any depth (function-level imports count too)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return names


def project_imports(path: Path) -> list[str]:
    return [name for name in imported_modules(path) if name == "l3_atom" or name.startswith("l3_atom.")]


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_pure_packages_import_nothing_above_themselves(folder: str) -> None:
    files = sorted((PACKAGE / folder).rglob("*.py"))
    assert files, folder
    upward = {
        f"{path.relative_to(PACKAGE)}: {name}"
        for path in files
        for name in project_imports(path)
        if not any(name == allowed or name.startswith(f"{allowed}.") for allowed in ALLOWED[folder])
    }
    assert not upward, sorted(upward)


def test_connectors_never_import_standardisers() -> None:
    files = sorted((PACKAGE / "off_chain").glob("*.py"))
    assert len(files) > 10
    upward = {
        f"{path.name}: {name}"
        for path in files
        for name in project_imports(path)
        if name.startswith(FORBIDDEN_IN_CONNECTORS)
    }
    assert not upward, sorted(upward)


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("def f():\n    from l3_atom.stream_processing.publisher import RecordPublisher\n")
    assert project_imports(module) == ["l3_atom.stream_processing.publisher"]
