"""The walk-forward backtest's universe scope: one network for every series, refitted on
the calendar they share (`--scope universe`, the pipeline's default); the per-ticker loop
and the pieces both share are in backtest.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from pipeline.config import Config
from pipeline.evaluation.backtest import (
    Block,
    Plan,
    adaptive,
    block_sessions,
    calibration,
    known,
    pooled_forecasts,
    refit_points,
)
from pipeline.evaluation.backtest_series import Series


def universe_blocks(series: list[Series], plan: Plan) -> list[list[Block]]:
    """Refit points on the calendar every series shares: every `refit_every` sessions of
    the union of their forecast days; per refit, each series' rows up to the next."""
    live = [s.feats["Date"].iloc[a:b] for s in series for a, b in refit_points(s, plan)]
    if not live:
        return []
    days = np.unique(pd.concat(live).to_numpy())
    starts = list(days[:: plan.refit_every])
    out = []
    for d0, d1 in zip(starts, [*starts[1:], None], strict=True):
        blocks = []
        for s in series:
            rows = [(a, b) for a, b in refit_points(s, plan)]
            if not rows:
                continue
            first, last = rows[0][0], rows[-1][1]
            dates = s.feats["Date"].to_numpy()
            a = max(first, int(np.searchsorted(dates, d0)))
            b = last if d1 is None else min(last, int(np.searchsorted(dates, d1)))
            if b > a:
                blocks.append((s, a, b))
        out.append(blocks)
    return out


def run_universe(
    cfg: Config,
    series: list[Series],
    plan: Plan,
    params_for: Callable[[list[Block]], tuple[Any, int]],
    step: Callable[[], None],
    forecast_only: frozenset[str] = frozenset(),
) -> pd.DataFrame:
    """Every refit of one network for all series (trained on all but `forecast_only`)."""
    frames = []
    for blocks in universe_blocks(series, plan):
        params, epochs = params_for(blocks)
        model = pooled_forecasts(
            blocks,
            params,
            epochs,
            cfg.tune.seed,
            cfg.model.base,
            forecast_only,
            cfg.tune.windows_per_epoch,
            cfg.model.combine_har,
        )
        frames += [block_sessions(s, a, b, model[s.ticker]) for s, a, b in blocks]
        step()
    if not frames:
        return pd.DataFrame()
    return adaptive(known(pd.concat(frames, ignore_index=True)), *calibration(cfg))
