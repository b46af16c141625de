"""How much should the LLM's option scores weigh in structured answers? Measured on a development split.

For a sample of (person, item) pairs of a dev seed, the configured LLM scores the options once (prompt:
prompts/choice.yaml, the twin's most informative earlier answers as evidence); the pooled answer is then
computed at several LLM weights, the other weights as calibrated. The chosen weight goes to
TWINCHAT_SURVEY_LLM_WEIGHT's default.

    python -m evals.llm_weight --pairs 150 --out evals/results/llm_weight.json
"""

from __future__ import annotations

import argparse
import json
import math
import random
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from evals.calibrate_survey import matrix_of
from evals.fidelity import Protocol, design
from twinchat.config import Settings
from twinchat.domain.survey import ChoiceModel, Question, Weights
from twinchat.importers.gss import GssPanel
from twinchat.services import TwinService

LLM_WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    settings = Settings()
    parser.add_argument("--panel", type=Path, default=settings.data_dir / "gss" / "panel06_long.csv.gz")
    parser.add_argument("--doc", type=Path, default=settings.data_dir / "gss" / "variable_doc.csv")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pairs", type=int, default=150)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    panel = GssPanel.load(args.panel, args.doc)
    plan = design(panel, Protocol(seed=args.seed))
    matrix = matrix_of(panel, plan)
    # The scorer of the real service: same prompt, same model, no stored twins needed.
    scratch = Path(tempfile.mkdtemp(prefix="twinchat-llm-weight-"))
    service = TwinService.from_settings(settings.model_copy(update={"home": scratch}))
    pairs = [(p, v) for p in plan.test for v in plan.held_out[p]]
    random.Random(args.seed).shuffle(pairs)
    pairs = pairs[: args.pairs]

    base = Weights()
    collector = ChoiceModel(matrix, base)
    scored = []
    started = time.perf_counter()
    for person, variable in pairs:
        question = Question(f"gss:{variable}", panel.wording[variable], plan.options[variable])
        twin = f"gss-{person}"
        _, used = collector._similar(
            twin,
            collector.matrix.find_key(question),
            question.options,
            collector._panel_prior(question.id, question.options, exclude=twin),
        )
        scores = service._score_options(twin, question, [a for a, _ in used[:8]])
        scored.append((twin, question, scores, plan.answers[(person, 3)][variable]))
    llm_seconds = time.perf_counter() - started

    results = []
    for weight in LLM_WEIGHTS:
        model = ChoiceModel(matrix, replace(base, llm=weight))
        hits, loss = 0, 0.0
        for twin, question, scores, actual in scored:
            answer = model.choose(twin, question, llm_scores=scores if weight > 0 else None)
            if weight == 1.0:  # the LLM alone
                best = max(question.options, key=lambda o: scores[o]) if scores else question.options[0]
                hits += best == actual
            else:
                hits += answer.answer == actual
            loss -= math.log(max(answer.distribution.get(actual, 0.0), 1e-6))
        results.append({"llm_weight": weight, "accuracy": hits / len(scored), "log_loss": loss / len(scored)})
        print(json.dumps(results[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "model": settings.llm,
                "seed": args.seed,
                "pairs": len(scored),
                "results": results,
                "note": "llm_weight 1.0 row: the LLM's own argmax alone",
                "weights": base.to_dict(),
                "scoring_seconds": round(llm_seconds, 1),
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
