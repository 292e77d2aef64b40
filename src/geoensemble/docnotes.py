"""SciPy's docstring notes left out of a stage script's imports (and its workers').

SciPy (1.15 and later) decorates several hundred functions with ``xp_capabilities``, which
parses each function's docstring with numpydoc's parser at import time to append a note on
array-API support. scikit-learn imports ``scipy.stats``, so every stage that loads a model
pays for it: 625 docstrings and about 0.15 s of a 2-core predict stage, for text a script
never shows. In a stage script (:func:`geoensemble.app.cli.run_then_exit`) the decorator
keeps each docstring as it is instead; what the functions do is unchanged. In a notebook or
the tests nothing changes.

The hook acts once, when ``scipy._lib._array_api`` is first imported, and costs nothing
when SciPy is never imported (``--help``, config errors). If SciPy's internals differ from
what it expects, it does nothing.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from types import ModuleType
from typing import Any

TARGET = "scipy._lib._array_api"


class PlainDoc:
    """Stands in for ``FunctionDoc`` in ``xp_capabilities``: the docstring unchanged.

    The decorator appends to ``doc['Notes']`` and keeps what follows the first line of
    ``str(doc)``; the note goes to a list nothing reads.
    """

    def __init__(self, func: Any) -> None:
        self.doc = getattr(func, "__doc__", None) or ""
        self.notes: list[str] = []

    def __getitem__(self, key: str) -> list[str]:
        return self.notes

    def __str__(self) -> str:
        return "\n" + self.doc


class _Loader(importlib.abc.Loader):
    """Runs the real loader, then replaces the module's ``FunctionDoc``."""

    def __init__(self, real: importlib.abc.Loader) -> None:
        self.real = real

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.real.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.real.exec_module(module)
        if isinstance(getattr(module, "FunctionDoc", None), type) and hasattr(
            module, "xp_capabilities"
        ):
            module.FunctionDoc = PlainDoc  # type: ignore[attr-defined]


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, name: str, path: Any, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name != TARGET:
            return None
        remove()
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _Loader(spec.loader)
        return spec


_finder = _Finder()


def install() -> None:
    """Skip SciPy's docstring notes in this process (a stage script), if SciPy's array-API
    module is not imported yet."""
    if TARGET not in sys.modules and _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)


def remove() -> None:
    """Undo :func:`install` (the hook also removes itself once it has acted)."""
    if _finder in sys.meta_path:
        sys.meta_path.remove(_finder)
