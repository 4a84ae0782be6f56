"""The production version's tuned parameters: what a refit and a backtest start from."""

from __future__ import annotations

import json
from typing import Any

from pipeline import tracking
from pipeline.config import Config
from pipeline.lifecycle import registry


def production_params(cfg: Config, key: str) -> tuple[dict[str, Any], int] | None:
    """The tuned parameters and epoch count of the production version of `key`'s own model
    (a ticker's, or `universe`), if it is an LSTM that passed the gate."""
    name = f"{cfg.registry.model_prefix}_{key}"
    version = registry.version_by_alias(cfg, name, registry.PRODUCTION)
    if version is None or "params" not in version.tags:
        return None
    if version.tags.get(registry.FORECASTER_TAG, "lstm") != "lstm":  # HAR serves: no LSTM's
        return None
    if version.tags.get(registry.FALLBACK_TAG):  # an LSTM the gate refused: tune again
        return None
    run = tracking.client(cfg).get_run(version.tags["run_id"])
    epochs = int(run.data.params.get("epochs", cfg.tune.max_epochs))
    return json.loads(version.tags["params"]), epochs
