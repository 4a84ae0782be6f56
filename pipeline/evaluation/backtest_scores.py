"""Scores of a walk-forward backtest, per ticker and pooled, and its plots.

Interval scores are in percent of the close they are made at (a Winkler score in
price divided by that close), so that tickers at $30 and at $800 pool fairly; CRPS
and QLIKE are on log returns. Pooled Diebold-Mariano tests take, per session, the mean
loss difference over the tickers that traded it: the tickers' losses on one day are
correlated, and averaging them first keeps the test honest about that.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipeline.evaluation.statistics import christoffersen, diebold_mariano_losses, kupiec
from pipeline.forecasting.intervals import LEVELS, interval_score

# model_raw: the model's intervals before the adaptive conformal widths; har_aci: HAR with them
FORECASTERS = ("model", "model_raw", "naive", "ewma", "har", "har_aci", "garch")
BASELINES = FORECASTERS[1:]
CLASSICAL = ("naive", "ewma", "har", "garch")  # what the gate's best baseline is chosen from


def present(days: pd.DataFrame, names: tuple[str, ...] = FORECASTERS) -> list[str]:
    """The forecasters `days` has intervals of (the daily evaluation has no model_raw)."""
    return [f for f in names if f"{f}_lower_80" in days]


def with_losses(days: pd.DataFrame) -> pd.DataFrame:
    """Per day and forecaster: hit at each level and the interval score in % of the close."""
    actual, last = days["actual"].to_numpy(), days["last_close"].to_numpy()
    cols: dict[str, np.ndarray] = {}
    for f in present(days):
        for level in LEVELS:
            pct = round(level * 100)
            lower, upper = days[f"{f}_lower_{pct}"].to_numpy(), days[f"{f}_upper_{pct}"].to_numpy()
            cols[f"{f}_hit_{pct}"] = (actual >= lower) & (actual <= upper)
            cols[f"{f}_is_{pct}"] = 100 * interval_score(actual, lower, upper, level) / last
    return days.assign(**cols)


def scores(days: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per forecaster: coverage with Kupiec and Christoffersen p-values, interval scores,
    CRPS, QLIKE; the model's MASE against tomorrow=today."""
    out: dict[str, dict[str, float]] = {}
    for f in present(days):
        s: dict[str, float] = {}
        for level in LEVELS:
            pct = round(level * 100)
            hits = days[f"{f}_hit_{pct}"].to_numpy()
            s[f"coverage_{pct}"] = float(hits.mean())
            s[f"kupiec_pvalue_{pct}"] = kupiec(hits, level)[1]
            s[f"christoffersen_pvalue_{pct}"] = christoffersen(hits)[1]
            s[f"interval_score_{pct}"] = float(days[f"{f}_is_{pct}"].mean())
        s["crps"] = float(days[f"{f}_crps"].mean())
        s["qlike"] = float(days[f"{f}_qlike"].mean())
        out[f] = s
    last = days["last_close"]  # relative errors: a $30 and an $800 stock weigh alike
    naive_mae = float(np.mean(np.abs(last - days["actual"]) / last))
    model_mae = float(np.mean(np.abs(days["model_forecast_close"] - days["actual"]) / last))
    out["model"]["mase"] = model_mae / naive_mae
    return out


def dm_against_baselines(days: pd.DataFrame) -> dict[str, dict[str, float]]:
    """The model's 80 % interval score against each baseline's: DM on the per-session mean
    difference over tickers; gain = how much lower the model's mean score is, in %."""
    out = {}
    for base in present(days, BASELINES):
        diff = (days["model_is_80"] - days[f"{base}_is_80"]).groupby(days["as_of"]).mean()
        stat, pvalue = diebold_mariano_losses(diff.to_numpy(), np.zeros(len(diff)))
        gain = 100 * (1 - days["model_is_80"].mean() / days[f"{base}_is_80"].mean())
        out[base] = {"stat": stat, "pvalue": pvalue, "gain_pct": float(gain)}
    return out


def coverage_by_year(days: pd.DataFrame) -> pd.DataFrame:
    """Coverage per ticker, calendar year and forecaster at each level, with Kupiec's
    p-value (a calibrated forecaster is rejected at 1 % in about 1 % of ticker-years)."""
    rows = []
    for (ticker, year), group in days.groupby([days["ticker"], days["as_of"].dt.year]):
        for f in present(group):
            row: dict[str, Any] = {"ticker": ticker, "year": int(year), "forecaster": f}
            row["sessions"] = len(group)
            for level in LEVELS:
                pct = round(level * 100)
                hits = group[f"{f}_hit_{pct}"].to_numpy()
                row[f"coverage_{pct}"] = float(hits.mean())
                row[f"kupiec_pvalue_{pct}"] = kupiec(hits, level)[1]
            rows.append(row)
    return pd.DataFrame(rows)


def kupiec_rejections(by_year: pd.DataFrame, alpha: float = 0.01) -> dict[str, dict[str, float]]:
    """Per level and forecaster: the share of ticker-years whose coverage Kupiec rejects."""
    return {
        str(round(level * 100)): {
            str(f): float((g[f"kupiec_pvalue_{round(level * 100)}"] < alpha).mean())
            for f, g in by_year.groupby("forecaster", sort=False)
        }
        for level in LEVELS
    }


def ticker_table(days: pd.DataFrame) -> pd.DataFrame:
    """Per ticker: sessions and each forecaster's mean 80 % interval score and coverage."""
    names = present(days)
    cols = [f"{f}_is_80" for f in names] + [
        f"{f}_hit_{round(lv * 100)}" for f in names for lv in LEVELS
    ]
    table = days.groupby("ticker")[cols].mean()
    return table.assign(sessions=days.groupby("ticker").size())


def ticker_wins(table: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per baseline: on how many tickers the model's mean 80 % interval score is lower,
    with a two-sided sign test (no better, no worse: each ticker a coin flip). Tickers'
    scores share market days, so the p-value is a guide, not exact."""
    from scipy.stats import binomtest

    out = {}
    for base in (b for b in BASELINES if f"{b}_is_80" in table):
        diff = (table["model_is_80"] - table[f"{base}_is_80"]).to_numpy()
        ahead, n = int((diff < 0).sum()), int((diff != 0).sum())
        out[base] = {
            "tickers": n,
            "model_ahead": ahead,
            "share": ahead / n if n else float("nan"),
            "sign_test_pvalue": float(binomtest(ahead, n).pvalue) if n else 1.0,
        }
    return out


def ratio_quantiles(table: pd.DataFrame, base: str = "har") -> dict[str, float]:
    """Quantiles over tickers of the model's mean 80 % interval score / the baseline's."""
    ratio = table["model_is_80"] / table[f"{base}_is_80"]
    return {f"p{q}": float(ratio.quantile(q / 100)) for q in (5, 25, 50, 75, 95)}


def headline(days: pd.DataFrame) -> dict[str, Any]:
    """What a reviewer reads first, for days already with_losses: pooled scores, the panel
    DM against each baseline, ticker wins with their sign tests, the spread of per-ticker
    ratios to HAR, the share of ticker-years Kupiec rejects at 1 %."""
    table = ticker_table(days)
    return {
        "first": f"{days['as_of'].min():%Y-%m-%d}",
        "last": f"{days['as_of'].max():%Y-%m-%d}",
        "tickers": len(table),
        "ticker_sessions": len(days),
        "pooled": scores(days),
        "dm_pooled": dm_against_baselines(days),
        "ticker_wins": ticker_wins(table),
        "ratio_to_har": ratio_quantiles(table) if "har_is_80" in table else {},
        "kupiec_1pct_rejected_share": kupiec_rejections(coverage_by_year(days)),
    }


def summarize(days: pd.DataFrame, report_from: Any = None) -> dict[str, Any]:
    """The headline, per-ticker scores and DM; with `report_from`, the headline again for
    the days before it (where variants are compared) and from it (the final figure)."""
    days = with_losses(days)
    by_year = coverage_by_year(days)
    rejected = by_year[by_year["kupiec_pvalue_80"] < 0.01]
    out = headline(days)
    out.update(
        sessions={t: len(g) for t, g in days.groupby("ticker")},
        per_ticker={t: scores(g) for t, g in days.groupby("ticker")},
        dm_per_ticker={t: dm_against_baselines(g) for t, g in days.groupby("ticker")},
        ticker_years_rejected_by_kupiec_1pct={
            f: int((rejected["forecaster"] == f).sum()) for f in present(days)
        },
        ticker_years=int(len(by_year) / len(present(days))),
    )
    if report_from is not None:
        cut = days["as_of"] >= pd.Timestamp(report_from)
        out["periods"] = {
            name: headline(part)
            for name, part in (("before", days[~cut]), ("final", days[cut]))
            if len(part)
        }
    return out


def ratio_plot(days: pd.DataFrame) -> Any:
    """The distribution over tickers of the model's 80 % interval score / HAR's."""
    from pipeline.evaluation.plots import pyplot

    table = ticker_table(with_losses(days))
    ratio = table["model_is_80"] / table["har_is_80"]
    fig, ax = pyplot().subplots(figsize=(8, 4))
    ax.hist(ratio, bins=min(60, max(10, len(ratio) // 5)), color="tab:blue", alpha=0.8)
    ax.axvline(1.0, color="black", lw=0.8, ls="--")
    ax.axvline(float(ratio.median()), color="tab:red", lw=1, label=f"median {ratio.median():.3f}")
    ahead = float((ratio < 1).mean())
    ax.set_title(
        f"Per ticker: model / HAR 80 % interval score ({len(ratio)} tickers, "
        f"model ahead on {ahead:.0%}; < 1 is better)"
    )
    ax.legend()
    fig.tight_layout()
    return fig


def plots(days: pd.DataFrame) -> dict[str, Any]:
    """Score over time (pooled, 63-session mean), coverage by year, and the fan of the
    first ticker's last 250 sessions."""
    from pipeline.evaluation.plots import pyplot

    plt = pyplot()
    days = with_losses(days)
    figures: dict[str, Any] = {}
    fig, ax = plt.subplots(figsize=(11, 4))
    for f in present(days):
        daily = days.groupby("as_of")[f"{f}_is_80"].mean()
        ax.plot(daily.index, daily.rolling(63, min_periods=20).mean(), lw=1, label=f)
    ax.set_title("80 % interval score, % of the close (pooled; 63-session mean; lower is better)")
    ax.legend()
    fig.tight_layout()
    figures["plots/backtest_score_over_time.png"] = fig
    by_year = coverage_by_year(days)
    fig, ax = plt.subplots(figsize=(11, 4))
    pooled = by_year.groupby(["year", "forecaster"])["coverage_80"].mean().unstack()
    pooled[present(days)].plot.bar(ax=ax, width=0.8)
    ax.axhline(0.8, color="black", lw=0.8, ls="--")
    ax.set_ylim(0.5, 1.0)
    ax.set_title("80 % coverage by year (mean over tickers; nominal 0.8)")
    fig.tight_layout()
    figures["plots/backtest_coverage_by_year.png"] = fig
    first = days[days["ticker"] == days["ticker"].iloc[0]].tail(250)
    fig, ax = plt.subplots(figsize=(11, 5))
    when = first["for_date"]
    ax.fill_between(when, first["model_lower_95"], first["model_upper_95"], alpha=0.2, label="95 %")
    ax.fill_between(
        when, first["model_lower_80"], first["model_upper_80"], alpha=0.35, label="80 %"
    )
    ax.plot(when, first["har_lower_80"], color="tab:red", lw=0.6, ls="--", label="HAR 80 %")
    ax.plot(when, first["har_upper_80"], color="tab:red", lw=0.6, ls="--")
    ax.plot(when, first["actual"], color="black", lw=1, label="realised close")
    ax.set_title(f"{first['ticker'].iloc[0]}: walk-forward forecast fan, last 250 sessions")
    ax.legend()
    fig.tight_layout()
    figures["plots/backtest_fan.png"] = fig
    if "har_is_80" in days:
        figures["plots/backtest_ratio_to_har.png"] = ratio_plot(days)
    return figures
