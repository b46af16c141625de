"""Privacy check: how near is each synthetic customer to the nearest real customer it was calibrated on?

Two distances to the real customers it was calibrated on:
- set: the Jaccard distance between the sets of StockCodes bought (0: the same items, 1: nothing in common),
  to the nearest real customer;
- ordered: 1 - LCS / longer length over the sequences of baskets in time order (a basket matches an identical
  basket), to the nearest of the ``CANDIDATES`` real customers closest by set, so copying a run of someone's
  orders shows even when the rest of the history differs.
A synthetic history reproduces a real one when either distance is 0; ``check`` raises PrivacyViolation then,
and the population is not stored.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from twinchat.synth.catalogue import Basket

CANDIDATES = 5


class PrivacyViolation(RuntimeError):
    pass


@dataclass(frozen=True)
class Nearest:
    twin_id: str
    real_customer: str | None
    distance: float
    same_sequence: bool
    sequence_distance: float = 1.0


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
        return [n for n in self.nearest if n.distance == 0 or n.same_sequence or n.sequence_distance == 0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": "jaccard distance between sets of StockCodes bought",
            "sequence_metric": f"1 - LCS/longer over basket sequences, nearest of the {CANDIDATES} closest by set",
            "synthetic_customers": len(self.nearest),
            "real_customers": self.real_customers,
            "min_distance": round(self.min_distance, 4),
            "median_distance": round(self.median_distance, 4),
            "min_sequence_distance": round(min(n.sequence_distance for n in self.nearest), 4),
            "median_sequence_distance": round(
                float(statistics.median(n.sequence_distance for n in self.nearest)), 4
            ),
            "reproduced": len(self.reproduced),
            "nearest": [
                {
                    "twin_id": n.twin_id,
                    "real_customer": n.real_customer,
                    "distance": round(n.distance, 4),
                    "same_sequence": n.same_sequence,
                    "sequence_distance": round(n.sequence_distance, 4),
                }
                for n in self.nearest
            ],
        }

    def summary(self) -> str:
        return (
            f"privacy: nearest real customer (Jaccard distance over items bought, {self.real_customers} real "
            f"customers): min {self.min_distance:.3f}, median {self.median_distance:.3f}; ordered baskets: min "
            f"{min(n.sequence_distance for n in self.nearest):.3f}; "
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
        ranked = sorted(
            (1 - len(mine & items[c]) / len(mine | items[c]), c)
            for c in {c for code in mine for c in index.get(code, ())}
        )
        nearest: tuple[float, str | None] = ranked[0] if ranked else (1.0, None)
        distance, closest = nearest
        same = closest is not None and list(real[closest]) == list(baskets)
        ordered = min((sequence_distance(baskets, real[c]) for _, c in ranked[:CANDIDATES]), default=1.0)
        found.append(Nearest(twin_id, closest, distance, same, ordered))
    return PrivacyReport(found, len(real))


def sequence_distance(a: Sequence[Basket], b: Sequence[Basket]) -> float:
    """1 - (longest common subsequence of identical baskets) / (the longer history's number of baskets);
    0 also when one history of two or more baskets lies whole, in order, inside the other (a copied run).

    >>> x, y, z = frozenset({"A"}), frozenset({"B"}), frozenset({"C"})
    >>> sequence_distance([x, y, z], [x, y, x]), sequence_distance([x, y, z], [x, z]), sequence_distance([x], [y])
    (0.33333333333333337, 0.0, 1.0)
    """
    if not a or not b:
        return 1.0
    previous = [0] * (len(b) + 1)
    for basket in a:
        current = [0]
        for j, other in enumerate(b):
            current.append(previous[j] + 1 if basket == other else max(previous[j + 1], current[j]))
        previous = current
    common = previous[-1]
    if common >= 2 and common == min(len(a), len(b)):
        return 0.0
    return 1 - common / max(len(a), len(b))
