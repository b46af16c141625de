"""Importing Gradio without regenerating its type stubs: about 4 of the 10 seconds `twinchat serve` took to start.

Gradio 6 (``gradio.component_meta.ComponentMeta``) calls ``create_or_modify_pyi`` for every component class it
defines, on every import: it parses the component's source file and rewrites the ``.pyi`` stub beside it in
site-packages. The stubs serve Gradio's own developers' editors; twinchat's pages never read them. A meta
path hook replaces the function with a no-op the moment ``gradio.component_meta`` has run, before any
component class is made. Where a future Gradio no longer has that function, the hook changes nothing.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from types import ModuleType
from typing import Any

MODULE = "gradio.component_meta"


def _no_stub(*_: Any, **__: Any) -> None:
    """Gradio's stub writer, switched off (see the module's docstring)."""


class _SkipStubs(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any, target: ModuleType | None = None) -> Any:
        if name != MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run(module)
            if callable(getattr(module, "create_or_modify_pyi", None)):
                module.create_or_modify_pyi = _no_stub  # type: ignore[attr-defined]

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def install() -> None:
    """Put the hook in place, once, unless Gradio's components are already imported (then it is too late)."""
    if MODULE in sys.modules or any(isinstance(f, _SkipStubs) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _SkipStubs())
