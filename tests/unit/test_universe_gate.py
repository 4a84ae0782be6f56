"""The gate's ticker rule on synthetic universes: chance is allowed for, a real loss is not.

Each ticker's evidence is built as the evaluation builds it: per-day 80 % interval scores
of the model and naive, and the Diebold-Mariano test of their difference
(statistics.diebold_mariano_losses)."""

from typing import Any

import numpy as np
import pytest

from pipeline.evaluation.statistics import diebold_mariano_losses
from pipeline.lifecycle.gate import decide, ticker_refusal
from pipeline.sections import RegistryConfig

GATE = RegistryConfig()
POOLED = {
    "model_mase": 1.0,
    "dm_stat": 0.0,
    "dm_pvalue": 1.0,
    "model_interval_score_80": 5.0,
    "naive_interval_score_80": 5.0,
    "model_coverage_80": 0.8,
}


def universe(
    seed: int, tickers: int = 300, days: int = 250, worse_share: float = 0.0, by: float = 0.0
) -> dict[str, dict[str, Any]]:
    """Per ticker: naive's daily interval scores (heavy-tailed, as real ones are) and the
    model's, equal in expectation, or `by` worse on `worse_share` of the tickers."""
    rng = np.random.default_rng(seed)
    out = {}
    for i in range(tickers):
        level = rng.uniform(3, 8)  # a ticker's typical score, % of the close
        naive = level * rng.lognormal(0, 0.6, days)
        worse = i < worse_share * tickers
        model = naive * (1 + (by if worse else 0.0)) * rng.lognormal(-0.005, 0.1, days)
        stat, pvalue = diebold_mariano_losses(model, naive)
        out[f"T{i:03d}"] = {
            "model_interval_score_80": float(model.mean()),
            "naive_interval_score_80": float(naive.mean()),
            "interval_dm_stat": stat,
            "interval_dm_pvalue": pvalue,
        }
    return out


def test_a_model_equal_to_naive_on_every_ticker_passes_despite_chance_losers() -> None:
    refused = [ticker_refusal({"tickers": universe(seed)}, GATE) for seed in range(10)]
    assert sum(r is not None for r in refused) <= 1  # FDR 5 %: a rare false alarm at most
    # on the means alone, tens of tickers trail naive by over 2 % by chance every time
    means_only = {
        t: {k: v for k, v in s.items() if not k.startswith("interval_dm")}
        for t, s in universe(0).items()
    }
    assert ticker_refusal({"tickers": means_only}, GATE) is not None


def test_a_model_worse_on_a_real_share_of_tickers_is_refused_with_the_counts() -> None:
    for seed in range(5):
        reason = decide({**POOLED, "tickers": universe(seed, worse_share=0.2, by=0.1)}, GATE)
        assert not reason.promote
        assert reason.reason.startswith("ticker rule: on T0")
        assert "of the 300 tickers too" in reason.reason and "Benjamini-Hochberg" in reason.reason


@pytest.mark.parametrize("share", [0.05, 0.5])
def test_the_refused_tickers_are_the_worse_ones(share: float) -> None:
    reason = ticker_refusal({"tickers": universe(7, worse_share=share, by=0.15)}, GATE)
    assert reason is not None
    named = reason.split("on ", 1)[1].split(" ", 1)[0]
    assert int(named[1:]) < share * 300  # the worst named is one that is truly worse


def test_a_small_significant_loss_within_the_tolerance_passes() -> None:
    """Thousands of days make a 1 % loss significant; the rule still asks for a material
    one (registry.ticker_tolerance, 2 %)."""
    tickers = universe(3, tickers=50, days=5000, worse_share=1.0, by=0.01)
    assert ticker_refusal({"tickers": tickers}, GATE) is None
    assert ticker_refusal({"tickers": tickers}, GATE.model_copy(update={"ticker_tolerance": 0.0}))


def test_the_pooled_interval_rule_reads_the_panel_dm_against_the_best_baseline() -> None:
    lenient = GATE.model_copy(update={"interval_tolerance": 0.05})
    ev = {**POOLED, "model_interval_score_80": 5.1, "naive_interval_score_80": 5.5}
    ev["har_interval_score_80"] = 5.0
    significant = {**ev, "interval_dm_har_stat": 4.0, "interval_dm_har_pvalue": 1e-4}
    refused = decide(significant, lenient)
    assert not refused.promote and "significantly worse than the best baseline's, HAR" in (
        refused.reason
    )
    assert decide(
        {**ev, "interval_dm_har_stat": 1.0, "interval_dm_har_pvalue": 0.3}, lenient
    ).promote
    won = {**ev, "model_interval_score_80": 4.9, "interval_dm_har_pvalue": 0.004}
    assert "HAR (5.0000) (DM p = 0.004)" in decide(won, GATE).reason
    one = {"T": {"model_interval_score_80": 1.0, "naive_interval_score_80": 1.0}}
    assert "(panel DM p = 0.004)" in decide({**won, "tickers": one}, GATE).reason
