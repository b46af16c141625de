"""The only place backend SDKs are imported, and each of them lazily, inside the adapter that needs it."""

from __future__ import annotations


class MissingDependency(ImportError):
    """A backend's package is not installed; the message says what to install."""


def require(module: str, package: str):  # type: ignore[no-untyped-def]
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependency(f"{module} is needed for this backend: pip install '{package}' ({exc})") from exc
