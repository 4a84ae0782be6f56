"""Which monitoring alarms stand for the universe's one model, tested on hundreds of stocks.

Each stock's monitor tests production on that stock alone, at 5 %: a sign test on the days
it lost to naive, a binomial test on its interval coverage (pipeline/monitoring/monitor.py).
For one model per stock that is the decision. For the universe's one model it is hundreds
of tests a day: all five of five days worse than naive has p = 1/32, so about 12 of 388
stocks raise that alarm on any day by chance alone, and the universe model was refit
about weekly on them (docs/benchmarks.md, the S&P 500 replay). So for the universe an
alarm stands only where it survives the false-discovery rate over the stocks tested that
day (Benjamini-Hochberg at `registry.significance`, as the gate treats a universe's
tickers), and only a standing alarm asks for a retrain or tells the gate that production
is beatable. Each stock's raised alarms are still shown in the day's table.
"""

from __future__ import annotations

from typing import Any

from pipeline.config import Config
from pipeline.data.universe import UNIVERSE
from pipeline.evaluation.statistics import fdr_adjusted
from pipeline.lifecycle import registry

# reason -> (the monitor's flag, its p-value, the days it was tested on)
TESTED = {
    "beatable": ("losing", "worse_pvalue", "days"),
    "coverage_drift": ("coverage_drift", "coverage_pvalue", "coverage_days"),
}


def standing(cfg: Config, monitoring: dict[str, dict[str, Any]]) -> dict[str, set[str]] | None:
    """Per reason, the stocks whose raised alarm stands across the universe (see the module
    docstring); None where each ticker has its own model (every raised alarm stands).
    `monitoring`: each ticker's monitoring summary of the day."""
    if cfg.model.scope != "universe":
        return None
    window = cfg.monitoring.window_days
    out: dict[str, set[str]] = {}
    for reason, (flag, key, days) in TESTED.items():
        tested = [
            (ticker, m)
            for ticker, m in monitoring.items()
            if m.get(key) is not None and (m.get(days) or 0) >= window
        ]
        adjusted = fdr_adjusted([float(m[key]) for _, m in tested])
        out[reason] = {
            ticker
            for (ticker, m), q in zip(tested, adjusted, strict=True)
            if m.get(flag) and q < cfg.registry.significance
        }
        # a flag without its p-value (written before monitoring kept one) stands as raised
        out[reason] |= {t for t, m in monitoring.items() if m.get(flag) and m.get(key) is None}
    return out


def counts(monitoring: dict[str, dict[str, Any]], stand: dict[str, set[str]]) -> dict[str, Any]:
    """For the report: per reason, the stocks tested, those that raised it, those where it
    stands."""
    out: dict[str, Any] = {}
    for reason, (flag, key, _) in TESTED.items():
        out[reason] = {
            "tested": sum(m.get(key) is not None for m in monitoring.values()),
            "raised": sum(bool(m.get(flag)) for m in monitoring.values()),
            "standing": len(stand[reason]),
        }
    return out


def flag_universe(cfg: Config, stand: dict[str, set[str]]) -> None:
    """The universe model's own beatable tag (what the gate reads): set while production's
    loss to naive stands on some stock, cleared when it stands on none."""
    from mlflow.exceptions import MlflowException

    from pipeline import tracking

    mc, name = tracking.client(cfg), registry.model_name(cfg, UNIVERSE)
    tag = registry.beatable_tag(cfg, UNIVERSE)
    try:
        tags = mc.get_registered_model(name).tags
    except MlflowException:  # not registered yet: nothing to flag
        return
    if stand["beatable"] and tags.get(tag) != "true":
        mc.set_registered_model_tag(name, tag, "true")
    elif not stand["beatable"] and tag in tags:
        mc.delete_registered_model_tag(name, tag)
