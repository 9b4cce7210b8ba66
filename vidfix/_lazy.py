"""Lazy package exports (PEP 562): ``import vidfix`` costs milliseconds; torch loads on first use.

A package lists its public names once, as ordinary imports under ``if TYPE_CHECKING:`` (type checkers and
editors read them as usual), and calls :func:`attach`, which reads that block and imports each name's module
on first attribute access. ``from vidfix import DCW`` works unchanged.

A name that is also a submodule's name (``vidfix.tap``, the function, beside ``vidfix/tap.py``) keeps meaning
the exported object even after the submodule was imported, as it did with eager imports.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

__all__ = ["attach"]


def _exports(init_file: str, package: str) -> dict[str, str]:
    """``name -> module`` from the ``if TYPE_CHECKING:`` imports of a package's ``__init__.py``."""
    tree = ast.parse(Path(init_file).read_text(encoding="utf-8"))
    where: dict[str, str] = {}
    for node in tree.body:
        if not (
            isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
        ):
            continue
        for stmt in node.body:
            if isinstance(stmt, ast.ImportFrom) and stmt.module:
                module = "." * stmt.level + stmt.module
                if stmt.level:
                    module = importlib.util.resolve_name(module, package)
                for alias in stmt.names:
                    where[alias.asname or alias.name] = module
    return where


class _LazyPackage(types.ModuleType):
    _lazy_where: dict[str, str]

    def __getattr__(self, name: str) -> Any:
        module = self.__dict__.get("_lazy_where", {}).get(name)
        if module is None:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        self.__dict__[name] = value
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        # The import system binds each imported submodule on its package; an export of the same name wins.
        where = self.__dict__.get("_lazy_where", {})
        if (
            isinstance(value, types.ModuleType)
            and value.__name__ == f"{self.__name__}.{name}"
            and name in where
            and where[name] == value.__name__
        ):
            value = getattr(value, name)
        super().__setattr__(name, value)

    def __dir__(self) -> list[str]:
        return sorted(set(self.__dict__) | set(self.__dict__.get("_lazy_where", {})))


def attach(package: str, init_file: str) -> None:
    """Make ``package`` (its ``__init__`` calls this with ``__name__, __file__``) import its exports lazily."""
    module = sys.modules[package]
    module.__dict__["_lazy_where"] = _exports(init_file, package)
    module.__class__ = _LazyPackage
