"""`python -m pipeline backtest`: walk-forward over tickers, scored, plotted, logged to MLflow.

The summary goes to stdout as one JSON line; the per-session table, the summary and
the plots go to an MLflow run in the `<experiment>_backtest` experiment (and to
`state/backtests/<run id>/`). A progress bar on stderr counts refits.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import time
from typing import Any

import numpy as np
import pandas as pd

from pipeline import tracking
from pipeline.config import Config
from pipeline.evaluation import backtest, backtest_scores, backtest_series, backtest_universe
from pipeline.evaluation.evaluate_run import log_evaluation
from pipeline.forecasting.model import LSTMParams

log = logging.getLogger(__name__)
PER_TICKER_METRICS = 20  # more tickers than this: per-ticker scores in per_ticker.csv only


def tuning_frame(cfg: Config, blocks: list[backtest.Block]) -> pd.DataFrame:
    """Each series' rows before its block, the last `val_fraction` of each validating."""
    frames = []
    for s, a, _ in blocks:
        feats = s.feats.iloc[:a].assign(ticker=s.ticker)
        labelled = feats["target"].notna().to_numpy()  # not a move over missing sessions
        n_val = max(1, round(int(labelled.sum()) * cfg.features.val_fraction))
        split = np.full(len(feats), "live", dtype=object)
        split[labelled] = ["train"] * (int(labelled.sum()) - n_val) + ["val"] * n_val
        frames.append(feats.assign(split=split))
    return pd.concat(frames, ignore_index=True)


def tune_on_history(cfg: Config, feats: pd.DataFrame, parent_id: str) -> tuple[LSTMParams, int]:
    """The pipeline's own Optuna search on history (one series or pooled), in memory;
    trials are child runs of the backtest's MLflow run."""
    import optuna

    from pipeline.forecasting.study import SurplusTrial
    from pipeline.forecasting.tune import TrialUnfit, make_objective

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=cfg.tune.seed, n_startup_trials=4),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2),
    )
    study.optimize(
        make_objective(cfg, feats, parent_id),
        n_trials=cfg.tune.n_trials,
        timeout=cfg.tune.timeout_s,
        catch=(SurplusTrial, TrialUnfit),
    )
    best = study.best_trial
    epochs = int(best.user_attrs.get("best_epoch", cfg.tune.max_epochs))
    return LSTMParams.from_dict(best.params), epochs


def run(cfg: Config, plan: backtest.Plan) -> dict[str, Any]:

    started = time.perf_counter()
    end = plan.end or dt.date.today()
    series, left_out = backtest_series.load_universe(cfg, plan.tickers, end)
    if left_out:
        log.warning("%d ticker(s) left out of the backtest: %s", len(left_out), left_out)
    if not series:
        raise ValueError(f"every ticker is left out: {left_out}")
    mc = tracking.client(cfg)
    exp = tracking.experiment_id(cfg, f"{cfg.tracking.experiment}_backtest")
    named = "-".join(plan.tickers) if len(plan.tickers) <= 5 else f"{len(plan.tickers)}-tickers"
    parent = mc.create_run(exp, run_name=f"backtest-{named}").info.run_id
    try:
        return _run(cfg, plan, series, left_out, parent, started, end)
    except BaseException as exc:  # Ctrl-C, an impossible span: the run ends, FAILED, saying why
        mc.set_tag(parent, "failed", f"{type(exc).__name__}: {exc}"[:500])
        mc.set_terminated(parent, "FAILED")
        raise


def _run(
    cfg: Config,
    plan: backtest.Plan,
    series: list[Any],
    left_out: dict[str, str],
    parent: str,
    started: float,
    end: dt.date,
) -> dict[str, Any]:
    from tqdm import tqdm

    mc = tracking.client(cfg)
    tracking.log_batch(
        mc,
        parent,
        params={
            "tickers": ",".join(plan.tickers),
            "start": plan.start.isoformat(),
            "end": end.isoformat(),
            "refit_every": plan.refit_every,
            "tune": plan.tune,
            "scope": plan.scope,
            "holdout": ",".join(plan.holdout),
            "base": cfg.model.base,
        },
        tags={"kind": "backtest", "code_version": tracking.code_version()},
    )
    chosen: dict[str, dict[str, Any]] = {}

    def params_for(key: str, blocks: list[backtest.Block]) -> tuple[LSTMParams, int]:
        if not plan.tune and key in chosen:
            return chosen[key]["params"], chosen[key]["epochs"]
        found = plan.known_params.get(key) if not plan.tune else None
        source = "production version" if found else "tuned at refit"
        trained_on = [b for b in blocks if b[0].ticker not in plan.holdout]
        params, epochs = found or tune_on_history(cfg, tuning_frame(cfg, trained_on), parent)
        chosen[key] = {"params": params, "epochs": epochs, "source": source}
        return params, epochs

    if plan.scope == "universe":
        refits = backtest_universe.universe_blocks(series, plan)
        with tqdm(total=len(refits), desc="backtest refits", unit="refit", file=sys.stderr) as bar:
            days = backtest_universe.run_universe(
                cfg,
                series,
                plan,
                lambda blocks: params_for("universe", blocks),
                lambda: bar.update(1),
                frozenset(plan.holdout),
            )
        total = len(refits)
    else:
        total = sum(len(backtest.refit_points(s, plan)) for s in series)
        with tqdm(total=total, desc="backtest refits", unit="refit", file=sys.stderr) as bar:
            tables = []
            for s in series:
                bar.set_postfix_str(s.ticker)
                tables.append(
                    backtest.run_ticker(
                        cfg,
                        s,
                        plan,
                        lambda s, a: params_for(s.ticker, [(s, a, a)]),
                        lambda: bar.update(1),
                    )
                )
        days = pd.concat(tables, ignore_index=True)
    if days.empty:
        raise ValueError(f"no session to forecast between {plan.start} and {end}")
    summary = backtest_scores.summarize(days, plan.report_from)
    summary.update(
        tickers=[s.ticker for s in series],
        left_out=left_out,
        start=f"{days['as_of'].min():%Y-%m-%d}",
        end=f"{days['as_of'].max():%Y-%m-%d}",
        refit_every=plan.refit_every,
        scope=plan.scope,
        holdout=list(plan.holdout),
        base=cfg.model.base,
        refits=total,
        params={
            t: {**c["params"].as_dict(), "epochs": c["epochs"], "source": c["source"]}
            for t, c in chosen.items()
        },
        wall_s=round(time.perf_counter() - started, 1),
        mlflow_run_id=parent,
    )
    log_to_mlflow(cfg, parent, days, summary)
    return summary


def log_to_mlflow(cfg: Config, run_id: str, days: pd.DataFrame, summary: dict[str, Any]) -> None:
    """The backtest's figures on its run, and its tables in state/backtests/<run id>/ too."""
    # per-ticker scores as metrics only for a few tickers (the table artifact has them
    # all): hundreds of tickers' would be tens of thousands of metrics in the UI
    scopes = [("pooled", summary["pooled"])]
    if len(summary["per_ticker"]) <= PER_TICKER_METRICS:
        scopes += list(summary["per_ticker"].items())
    metrics = {
        f"{scope}_{f}_{k}": v
        for scope, per in scopes
        for f, scores in per.items()
        for k, v in scores.items()
    }
    for base, dm in summary["dm_pooled"].items():
        metrics.update({f"pooled_dm_vs_{base}_{k}": v for k, v in dm.items()})
    for base, wins in summary["ticker_wins"].items():
        metrics.update({f"ticker_wins_vs_{base}_{k}": v for k, v in wins.items()})
    where = cfg.layout.root / "backtests" / run_id
    where.mkdir(parents=True, exist_ok=True)
    (where / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    days.to_csv(where / "sessions.csv", index=False, date_format="%Y-%m-%d")
    scored = backtest_scores.with_losses(days)
    backtest_scores.coverage_by_year(scored).to_csv(where / "coverage_by_year.csv", index=False)
    backtest_scores.ticker_table(scored).to_csv(where / "per_ticker.csv")
    figures = backtest_scores.plots(days)
    for name, fig in figures.items():
        fig.savefig(where / name.split("/")[-1])
    tables = ("summary.json", "sessions.csv", "coverage_by_year.csv", "per_ticker.csv")
    files = {str(where / name): "backtest" for name in tables}
    log_evaluation(cfg, run_id, metrics, figures, files=files)
    tracking.client(cfg).set_terminated(run_id, "FINISHED")
    summary["artifacts"] = str(where)


def printed(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary as the command prints it: for more than PER_TICKER_METRICS tickers,
    without the per-ticker sections (summary.json and per_ticker.csv hold them)."""
    if len(summary["per_ticker"]) <= PER_TICKER_METRICS:
        return summary
    per_ticker = ("sessions", "per_ticker", "dm_per_ticker")
    return {k: v for k, v in summary.items() if k not in per_ticker}
