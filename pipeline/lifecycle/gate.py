"""The promotion gate: whether a version's evidence earns `production`, and why (not).

Rules in order, each refusal naming its rule (and the baseline): point (not
significantly worse than naive), intervals (no worse than the best classical
baseline, calibrated), tickers (a pooled model loses to naive on none), production.
Pure functions of the evidence and the config's `registry` section.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pipeline.evaluation.statistics import fdr_adjusted
from pipeline.sections import RegistryConfig


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


BASELINE_NAMES = {"naive": "naive", "ewma": "EWMA", "har": "HAR", "garch": "GJR-GARCH-t"}
SHOWN_TICKERS = 5  # a refusal names at most this many more tickers (a universe has hundreds)


def decide(
    ev: dict[str, Any], gate: RegistryConfig, production_beatable: bool | str = False
) -> Decision:
    """The promotion gate, rule by rule; the reason names the rule (and the baseline).

    1. point: the point forecast is not significantly worse than naive (Diebold-Mariano
       at `gate.significance`) nor worse by more than `gate.point_tolerance` in MASE: on
       daily prices the drift and tomorrow=today are indistinguishable, so demanding
       "MASE below 1" decided by a coin flip;
    2. intervals, where the model earns promotion: its 80 % interval score is at least as
       good as the best baseline's (naive, EWMA, HAR, GJR-GARCH-t) on the same days, and
       its 80 % coverage is within `gate.coverage_tolerance` of nominal;
    3. production: no worse than the model in production on the same days (MAE within
       `gate.production_tolerance`); a model whose figures are production's own (the
       same model again: equal to the last digits, not to the four shown) does not move it.
    """
    refused = point_refusal(ev, gate) or interval_refusal(ev, gate) or ticker_refusal(ev, gate)
    if refused:
        return Decision(False, refused)
    earned = earned_by(ev)
    prod_mae = ev.get("production_mae")
    if prod_mae is None:
        return Decision(True, f"{earned}; no production model yet")
    if production_beatable:  # True: monitoring's alarm; a text: why else
        why = (
            production_beatable
            if isinstance(production_beatable, str)
            else "has been losing to naive lately"
        )
        return Decision(True, f"{earned}; production v{ev.get('production_version')} {why}")
    if ev["model_mae"] > prod_mae * (1 + gate.production_tolerance):
        return Decision(
            False,
            f"production rule: MAE {ev['model_mae']:.4f} is worse than production v"
            f"{ev.get('production_version')} ({prod_mae:.4f}) on the same days",
        )
    mine, theirs = ev.get("model_interval_score_80"), ev.get("production_interval_score_80")
    same_intervals = mine is None or theirs is None or math.isclose(mine, theirs, rel_tol=1e-9)
    if math.isclose(ev["model_mae"], prod_mae, rel_tol=1e-9) and same_intervals:
        return Decision(
            False,
            f"production rule: no better than production v{ev.get('production_version')} "
            f"on the same days (MAE {ev['model_mae']:.6g} against {prod_mae:.6g}, 80 % "
            f"interval score {_num(mine)} against {_num(theirs)}): nothing gained by a move",
        )
    return Decision(
        True,
        f"{earned}; no worse than production v{ev.get('production_version')} "
        f"(MAE {ev['model_mae']:.6g} against {prod_mae:.6g}, 80 % interval score "
        f"{_num(mine)} against {_num(theirs)}) on the same days",
    )


def _num(value: Any) -> str:
    return "unknown" if value is None else f"{float(value):.6g}"


def point_refusal(ev: dict[str, Any], gate: RegistryConfig) -> str | None:
    mase = ev["model_mase"]
    limit = 1.0 - gate.naive_margin + gate.point_tolerance
    if mase > limit:
        return (
            f"point rule: MASE {mase:.4f} vs naive is above {limit:.4f} "
            "(registry.naive_margin, point_tolerance): the model is worse than tomorrow=today"
        )
    stat, pvalue = ev.get("dm_stat"), ev.get("dm_pvalue")
    if stat is not None and pvalue is not None and stat > 0 and pvalue < gate.significance:
        return (
            f"point rule: the point forecast is significantly worse than naive (MASE "
            f"{mase:.4f}, Diebold-Mariano p = {pvalue:.3g} < {gate.significance})"
        )
    return None


def ticker_refusal(ev: dict[str, Any], gate: RegistryConfig) -> str | None:
    """A model judged on several tickers together must not lose to the naive interval on
    any one of them (a pooled win can hide one): refused where its 80 % interval score is
    worse than naive's by more than `gate.ticker_tolerance` *and* significantly so, after
    controlling the false-discovery rate over the universe's tickers (Benjamini-Hochberg
    at `gate.significance` on one-sided Diebold-Mariano p-values). Of hundreds of tickers,
    some trail naive by chance alone: a rule on each one's mean would refuse a model equal
    to naive everywhere. Evidence without per-ticker p-values (versions evaluated before
    they were kept) is judged on the means alone. The reason names the worst and counts."""
    rows = [
        (t, s["model_interval_score_80"], s["naive_interval_score_80"], _worse_pvalue(s))
        for t, s in (ev.get("tickers") or {}).items()
        if s.get("model_interval_score_80") is not None
        and s.get("naive_interval_score_80") is not None
    ]
    if not rows:
        return None
    # each ticker on its own evidence: with p-values, FDR-adjusted over those that have
    # them; without (a version evaluated before they were kept), on its mean alone
    with_p = [i for i, (*_, p) in enumerate(rows) if p is not None]
    adjusted = [0.0] * len(rows)
    pvalues = [float(p) for *_, p in rows if p is not None]
    for i, q in zip(with_p, fdr_adjusted(pvalues), strict=True):
        adjusted[i] = q
    tested = len(with_p) == len(rows)
    losing = sorted(
        (
            (score / naive, ticker, score, naive, q)
            for (ticker, score, naive, _), q in zip(rows, adjusted, strict=True)
            if score > naive * (1 + gate.ticker_tolerance) and q < gate.significance
        ),
        reverse=True,
    )
    if not losing:
        return None
    _, ticker, score, naive, q = losing[0]
    others = [t for _, t, *_ in losing[1:]]
    more = (
        f"; {len(others)} more of the {len(rows)} tickers too "
        f"({', '.join(others[:SHOWN_TICKERS])}{', ...' if len(others) > SHOWN_TICKERS else ''})"
        if others
        else ""
    )
    significant = (
        f", significantly (FDR-adjusted p = {q:.2g} < {gate.significance} over "
        f"{len(rows)} tickers, Benjamini-Hochberg)"
        if tested
        else ""
    )
    return (
        f"ticker rule: on {ticker} the 80 % interval score {score:.4f} is worse than "
        f"the naive interval's ({naive:.4f}) by more than "
        f"{gate.ticker_tolerance:.0%} (registry.ticker_tolerance){significant}{more}"
    )


def _worse_pvalue(scores: dict[str, Any]) -> float | None:
    """One-sided p-value of "the model's interval score is worse than naive's" from the
    two-sided Diebold-Mariano test the evidence holds, or None when it holds none."""
    stat, pvalue = scores.get("interval_dm_stat"), scores.get("interval_dm_pvalue")
    if stat is None or pvalue is None:
        return None
    stat, pvalue = float(stat), float(pvalue)
    if not (math.isfinite(stat) and 0 <= pvalue <= 1):  # no test could be made: no evidence
        return 1.0
    return pvalue / 2 if stat > 0 else 1 - pvalue / 2


def best_baseline(ev: dict[str, Any]) -> tuple[str, float] | None:
    """The baseline with the lowest 80 % interval score among those the evidence holds."""
    scores = {
        b: ev[f"{b}_interval_score_80"] for b in BASELINE_NAMES if f"{b}_interval_score_80" in ev
    }
    return min(scores.items(), key=lambda kv: kv[1]) if scores else None


def interval_refusal(ev: dict[str, Any], gate: RegistryConfig) -> str | None:
    """Why the model's 80 % intervals fail the gate, or None (also when it has none)."""
    score, best = ev.get("model_interval_score_80"), best_baseline(ev)
    if score is None or best is None:
        return None
    name, limit = best
    if score > limit * (1 + gate.interval_tolerance):
        return (
            f"interval rule: 80 % interval score {score:.4f} is worse than the best "
            f"baseline's, {BASELINE_NAMES[name]} ({limit:.4f}), on the same days"
            f"{_dm_text(ev, name)}"
        )
    worse = _worse_pvalue(_dm_against(ev, name))
    if worse is not None and score > limit and worse < gate.significance:
        return (
            f"interval rule: 80 % interval score {score:.4f} is significantly worse than the "
            f"best baseline's, {BASELINE_NAMES[name]} ({limit:.4f}): one-sided "
            f"Diebold-Mariano p = {worse:.2g} < {gate.significance}, within "
            "registry.interval_tolerance or not"
        )
    cover = ev["model_coverage_80"]
    if abs(cover - 0.8) > gate.coverage_tolerance:
        return (
            f"interval rule: 80 % interval coverage {cover:.1%} is more than "
            f"{gate.coverage_tolerance:.0%} from nominal 80 % (registry.coverage_tolerance): "
            "the intervals are not calibrated"
        )
    return None


def earned_by(ev: dict[str, Any]) -> str:
    point = f"point forecast no worse than naive (MASE {ev['model_mase']:.4f})"
    best, score = best_baseline(ev), ev.get("model_interval_score_80")
    if best is None or score is None:
        return point
    return (
        f"{point}; 80 % interval score {score:.4f} <= the best baseline's, "
        f"{BASELINE_NAMES[best[0]]} ({best[1]:.4f}){_dm_text(ev, best[0])}"
    )


def _dm_against(ev: dict[str, Any], baseline: str) -> dict[str, Any]:
    """The evidence's Diebold-Mariano test of the model's 80 % interval score against
    `baseline` (for a universe: on per-session means over tickers, the panel test)."""
    name = "" if baseline == "naive" else f"{baseline}_"
    return {
        "interval_dm_stat": ev.get(f"interval_dm_{name}stat"),
        "interval_dm_pvalue": ev.get(f"interval_dm_{name}pvalue"),
    }


def _dm_text(ev: dict[str, Any], baseline: str) -> str:
    dm = _dm_against(ev, baseline)
    if dm["interval_dm_pvalue"] is None:
        return ""
    panel = "panel " if ev.get("tickers") else ""
    return f" ({panel}DM p = {float(dm['interval_dm_pvalue']):.2g})"


def data_refusal(ev: dict[str, Any], production_tags: dict[str, str], version: str) -> str | None:
    """Why a version whose data end before production's cannot replace it, or None: each
    is tested on the last days its data held, so an earlier last test day means less data
    (a backfill or a replay of an old day)."""
    seen, new = production_tags.get("last_test_date"), ev.get("last_test_date")
    if not seen or not new or str(new) >= seen:
        return None
    return (
        f"data rule: its data end on {new}, production v{version}'s on {seen}: a run for an "
        "older day does not replace newer production (`promote --force` can, audited)"
    )
