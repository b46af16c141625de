"""The back-test evaluator: its AUC by hand, and one run on the real Online Retail sample (about 15 s)."""

from __future__ import annotations

from datetime import date

import pytest

from evals.backtest import DATA, auc, backtest, load_histories
from twinchat.domain.behaviour import features


def test_auc_by_hand() -> None:
    assert auc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == 0.75
    with pytest.raises(ValueError, match="bought again"):
        auc([0.1, 0.2], [True, True])


@pytest.mark.skipif(not DATA.is_file(), reason="the Online Retail sample is not in ../shared/data")
def test_the_backtest_scores_every_customer_with_the_twins_feature_code() -> None:
    result = backtest(DATA, holdout_days=90)
    data = result["data"]
    assert data["calibration"].endswith("2011-09-10") and data["holdout"] == "2011-09-11 to 2011-12-09"
    rows = result["customers"]
    assert len(rows) == data["customers"] > 2000 and not result["failures"]
    for name in ("model", "rate", "rf_cells"):
        assert 0 < result[name]["mae"] <= result[name]["rmse"] and 0.5 < result[name]["auc"] < 1
    # the features are the ones a twin's prediction is made from
    histories = load_histories(DATA)
    row = max(rows, key=lambda r: r["frequency"])
    f = features(histories[row["customer"]], as_of=date(2011, 9, 10))
    assert f is not None and (f.frequency, f.recency, f.age) == (
        row["frequency"],
        row["recency_days"],
        row["age_days"],
    )
    with pytest.raises(ValueError, match="must fit"):
        backtest(DATA, holdout_days=90, cutoff=date(2011, 12, 1))
