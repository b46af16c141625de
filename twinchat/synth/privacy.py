"""Privacy check: how near is each synthetic customer to the nearest real customer it was calibrated on?

Distance is the Jaccard distance between the sets of StockCodes bought (0: the same items, 1: nothing in
common). A synthetic history reproduces a real one when the distance is 0 or its basket sequence is identical;
``check`` raises PrivacyViolation then, and the population is not stored.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from twinchat.synth.catalogue import Basket


class PrivacyViolation(RuntimeError):
    pass


@dataclass(frozen=True)
class Nearest:
    twin_id: str
    real_customer: str | None
    distance: float
    same_sequence: bool


@dataclass(frozen=True)
class PrivacyReport:
    """Nearest-neighbour distances of synthetic customers to real ones.

    >>> r = nearest_neighbours({"syn-1": [frozenset({"A"})]}, {"17850": (frozenset({"A", "B"}),)})
    >>> r.min_distance, r.nearest[0].real_customer, r.reproduced
    (0.5, '17850', [])
    """

    nearest: list[Nearest]
    real_customers: int

    @property
    def distances(self) -> list[float]:
        return [n.distance for n in self.nearest]

    @property
    def min_distance(self) -> float:
        return min(self.distances)

    @property
    def median_distance(self) -> float:
        return float(statistics.median(self.distances))

    @property
    def reproduced(self) -> list[Nearest]:
        return [n for n in self.nearest if n.distance == 0 or n.same_sequence]

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": "jaccard distance between sets of StockCodes bought",
            "synthetic_customers": len(self.nearest),
            "real_customers": self.real_customers,
            "min_distance": round(self.min_distance, 4),
            "median_distance": round(self.median_distance, 4),
            "reproduced": len(self.reproduced),
            "nearest": [
                {
                    "twin_id": n.twin_id,
                    "real_customer": n.real_customer,
                    "distance": round(n.distance, 4),
                    "same_sequence": n.same_sequence,
                }
                for n in self.nearest
            ],
        }

    def summary(self) -> str:
        return (
            f"privacy: nearest real customer (Jaccard distance over items bought, {self.real_customers} real "
            f"customers): min {self.min_distance:.3f}, median {self.median_distance:.3f}; "
            f"{len(self.reproduced)} synthetic histories reproduce a real one"
        )

    def check(self) -> PrivacyReport:
        if self.reproduced:
            names = ", ".join(f"{n.twin_id} ~ {n.real_customer}" for n in self.reproduced[:5])
            raise PrivacyViolation(f"synthetic histories reproduce real customers' records: {names}")
        return self


def nearest_neighbours(
    synthetic: Mapping[str, Sequence[Basket]], real: Mapping[str, Sequence[Basket]]
) -> PrivacyReport:
    """Each synthetic customer's nearest real customer; only customers sharing an item are compared."""
    items = {c: frozenset().union(*baskets) for c, baskets in real.items()}
    index: dict[str, list[str]] = defaultdict(list)
    for customer, codes in items.items():
        for code in codes:
            index[code].append(customer)
    found = []
    for twin_id, baskets in synthetic.items():
        mine = frozenset().union(*baskets)
        best: tuple[float, str | None] = (1.0, None)
        for customer in sorted({c for code in mine for c in index.get(code, ())}):
            theirs = items[customer]
            distance = 1 - len(mine & theirs) / len(mine | theirs)
            best = min(best, (distance, customer), key=lambda b: b[0])
        same = best[1] is not None and list(real[best[1]]) == list(baskets)
        found.append(Nearest(twin_id, best[1], best[0], same))
    return PrivacyReport(found, len(real))
