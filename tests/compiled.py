"""The optional C extensions in tests: each module, or None where it is not built, and a skip that says why."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest


def compiled(module: str, what: str) -> tuple[ModuleType | None, pytest.MarkDecorator]:
    """``module`` (None where not built) and a mark that skips a test without it, naming ``what`` it is."""
    try:
        found = importlib.import_module(module)
    except ImportError:
        found = None
    reason = f"{what} is not built here (pip install -r requirements.txt compiles it with a C compiler)"
    return found, pytest.mark.skipif(found is None, reason=reason)
