"""Strategy tests' statistics: response rates per variant with intervals, segments, and a paired A/B difference.

Each twin i answers each variant v with a distribution; p[i, v] is its probability of responding (the mass on
the campaign's responding options). The estimated response rate of v is the mean of p[i, v] over the twins:
probabilities, not a count of the twins whose likeliest answer is "would buy".

Intervals are a parametric bootstrap over twins (``DRAWS`` replicates, percentile intervals): each replicate
resamples the twins with replacement, then draws each resampled twin's response to every variant from its
probabilities, with one uniform number per twin shared by the variants (a customer who would respond to A is
the likeliest to respond to B: the comparison is paired). The interval of a rate is therefore the range of
response rates a campaign to this many customers like the panel's would observe: it holds both which
customers are in the panel and whether each responds, and its width is of the order of a binomial interval,
1.96 * sqrt(r (1 - r) / n) either side.

The A/B comparison is the difference r_B - r_A on the same twins, with its percentile interval, the
probability that B's rate is higher than A's (the share of replicates where it is, ties counted half), and a
two-sided bootstrap p-value for "no difference" (twice the smaller tail of the replicates at 0, at most 1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twinchat.domain.campaign import Campaign

if TYPE_CHECKING:
    import numpy as np

DRAWS = 2000
LEVEL = 0.95
SEED = 0
METHOD = (
    "parametric bootstrap over twins: twins resampled with replacement, each resampled twin's response drawn "
    "from its probability, one shared uniform per twin across variants (paired); percentile intervals"
)


@dataclass(frozen=True)
class TwinResponse:
    """One twin's simulated response to one variant."""

    twin_id: str
    variant: str
    distribution: dict[str, float]
    p_response: float  # the mass on the campaign's responding options
    reason: str
    evidence: list[dict[str, Any]]  # citations: {event_id, text, score}
    parts: list[dict[str, Any]]
    segments: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        answer = max(self.distribution, key=lambda k: self.distribution[k]) if self.distribution else ""
        return {
            "twin_id": self.twin_id,
            "variant": self.variant,
            "answer": answer,
            "distribution": {k: round(v, 4) for k, v in self.distribution.items()},
            "p_response": round(self.p_response, 4),
            "reason": self.reason,
            "evidence": self.evidence,
            "parts": self.parts,
            "segments": self.segments,
            "simulated": True,
        }


def p_response(distribution: Mapping[str, float], responding: Sequence[str]) -> float:
    return min(1.0, max(0.0, sum(distribution.get(r, 0.0) for r in responding)))


def replicates(p: np.ndarray, *, draws: int = DRAWS, seed: int = SEED) -> np.ndarray:
    """Bootstrap replicates of every variant's response rate: p is (twins, variants), the result (draws, variants).

    See the module docstring; chunked so that memory stays bounded on large panels.
    """
    import numpy as np

    n, k = p.shape
    rng = np.random.default_rng(seed)
    out = np.empty((draws, k))
    chunk = max(1, 4_000_000 // max(1, n * k))
    for start in range(0, draws, chunk):
        m = min(chunk, draws - start)
        idx = rng.integers(0, n, size=(m, n))
        u = rng.random((m, n))
        out[start : start + m] = (u[..., None] < p[idx]).mean(axis=1)
    return out


def estimate(p: np.ndarray, reps: np.ndarray, *, level: float = LEVEL) -> dict[str, Any]:
    """One variant's rate (mean of p) and its percentile interval from its replicates."""
    import numpy as np

    tail = (1 - level) / 2 * 100
    low, high = np.percentile(reps, [tail, 100 - tail])
    return {"rate": _r(float(p.mean())), "interval": [_r(float(low)), _r(float(high))], "n": int(p.shape[0])}


def difference(
    pa: np.ndarray, pb: np.ndarray, ra: np.ndarray, rb: np.ndarray, *, level: float = LEVEL
) -> dict[str, Any]:
    """r_B - r_A on the same twins: interval, P(B > A) and a two-sided p-value (see the module docstring)."""
    import numpy as np

    d = rb - ra
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(d, [tail, 100 - tail])
    above, below = float(np.mean(d > 0)), float(np.mean(d < 0))
    ties = 1.0 - above - below
    return {
        "difference": _r(float(pb.mean() - pa.mean())),
        "interval": [_r(float(low)), _r(float(high))],
        "p_b_better": _r(above + ties / 2),
        "p_value": _r(min(1.0, 2 * min(above + ties, below + ties))),
    }


def summarize(
    campaign: Campaign,
    responses: Sequence[TwinResponse],
    *,
    draws: int = DRAWS,
    seed: int = SEED,
    level: float = LEVEL,
) -> dict[str, Any]:
    """Rates per variant, the A/B comparison and the segment breakdowns of a simulation's responses."""
    import numpy as np

    keys = [v.key for v in campaign.variants]
    by_twin: dict[str, dict[str, TwinResponse]] = {}
    for r in responses:
        by_twin.setdefault(r.twin_id, {})[r.variant] = r
    twins = [t for t, answered in by_twin.items() if all(k in answered for k in keys)]
    if not twins:
        return {"variants": {}, "comparison": None, "segments": {}}
    p = np.array([[by_twin[t][k].p_response for k in keys] for t in twins])

    def block(rows: list[int]) -> dict[str, Any]:
        sub = p[rows]
        reps = replicates(sub, draws=draws, seed=seed)
        variants = {}
        for j, k in enumerate(keys):
            shares = {
                o: _r(float(np.mean([by_twin[twins[i]][k].distribution.get(o, 0.0) for i in rows])))
                for o in by_twin[twins[rows[0]]][k].distribution
            }
            variants[k] = {**estimate(sub[:, j], reps[:, j], level=level), "shares": shares}
        a, b = (keys.index(c) for c in campaign.compare)
        comparison = {
            "a": campaign.compare[0],
            "b": campaign.compare[1],
            **difference(sub[:, a], sub[:, b], reps[:, a], reps[:, b], level=level),
        }
        return {"n": len(rows), "variants": variants, "comparison": comparison}

    overall = block(list(range(len(twins))))
    segments: dict[str, dict[str, Any]] = {}
    for name in campaign.segments:
        groups: dict[str, list[int]] = {}
        for i, t in enumerate(twins):
            value = next(iter(by_twin[t].values())).segments.get(name, "unknown")
            groups.setdefault(value, []).append(i)
        segments[name] = {
            value: block(rows) for value, rows in sorted(groups.items(), key=lambda g: -len(g[1]))
        }
    return {
        "variants": overall["variants"],
        "comparison": overall["comparison"],
        "segments": segments,
        "statistics": {"method": METHOD, "draws": draws, "seed": seed, "level": level},
    }


def _r(x: float) -> float:
    return round(x, 4)
