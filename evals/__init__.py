"""Evaluations of twinchat's twins, each a versioned protocol from ../shared/BENCHMARKS.md.

``twinchat eval NAME`` runs one (``--quick`` for the small CI size); :mod:`evals.core` writes its folder.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evals.core import Evaluator

# name: "module:class". Modules import their heavy libraries inside ``run``, so listing them stays cheap.
REGISTRY = {
    "fidelity": "evals.fidelity:Fidelity",
    "twin2k": "evals.twin2k:Twin2k",
    "grounding": "evals.grounding:Grounding",
    "corrections": "evals.corrections:Corrections",
    "backtest": "evals.backtest:Backtest",
}


def evaluators() -> dict[str, type[Evaluator]]:
    found = {}
    for name, where in REGISTRY.items():
        module, _, cls = where.partition(":")
        found[name] = getattr(import_module(module), cls)
    return found
