"""The preprocessing spec: what a logged version carries besides its network.

Written at training (`preprocessing_spec`, logged as the version's preprocessing.json)
and read back by the pyfunc (pipeline/forecasting/forecaster.py): the windows, the
scalers, the base scale's fit, the adaptive widths' settings; from it, the rows a
request needs, the most windows it goes through the network with, and the registered
version its run id names.
"""

from __future__ import annotations

from typing import Any

from pipeline.data.features import FEATURES, HAR_WINDOWS, Scaler
from pipeline.forecasting.intervals import STUDENT_T_DF


def preprocessing_spec(
    window: int,
    vol_window: int,
    volume_window: int,
    x_scaler: Scaler,
    y_scaler: Scaler,
    calendar: str,
    max_rows: int,
    run_id: str | None = None,
    base: dict[str, Any] | None = None,
    calibration: dict[str, Any] | None = None,
    combine: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What the pyfunc needs besides the network: windows, scalers, the base scale's fit,
    the adaptive conformal widths' settings (none: the intervals as the network gives them),
    and HAR's fit where the forecast is combined with HAR's (intervals.combine_with_har)."""
    base = base or {"kind": "trailing"}
    return {
        "run_id": run_id,  # the run that logged it: its registered version can be looked up
        "window": window,
        "vol_window": vol_window,
        "volume_window": volume_window,
        "features": FEATURES,
        "calendar": calendar,
        "max_rows": max_rows,
        "x_mean": x_scaler.mean.tolist(),
        "x_scale": x_scaler.scale.tolist(),
        "y_mean": y_scaler.mean.tolist(),
        "y_scale": y_scaler.scale.tolist(),
        "distribution": {"family": "student_t", "df": STUDENT_T_DF, "base_scale": base["kind"]},
        "base": base,
        "har_window": HAR_WINDOWS[-1],
        "conformal": calibration,
        "combine": combine,  # HAR's fit the forecast is combined with (None: not combined)
    }


def min_rows(spec: dict[str, Any]) -> int:
    """Rows a request needs: the feature warm-up plus one window."""
    warm = (int(spec["vol_window"]), int(spec["volume_window"]), int(spec.get("har_window", 0)))
    return int(spec["window"]) + max(warm)


def most_windows(spec: dict[str, Any]) -> int:
    """Windows a request sends through the network at most: its newest, and the lookback's
    sessions before it forecast again for the adaptive widths (none without them, step 0)."""
    calibration = spec.get("conformal") or {}  # versions logged before: none
    if float(calibration.get("step", 0.0)) <= 0:
        return 1
    return 1 + max(0, int(calibration.get("lookback", 0)))


def lookup_version(run_id: str | None) -> str:
    """The one registered version logged by `run_id`, or "unknown" (no run id recorded,
    no registry reachable, or not exactly one version)."""
    import mlflow

    # without a configured store there is no registry to ask (and MLflow's default would
    # create one in the working directory)
    if not run_id or not mlflow.is_tracking_uri_set():
        return "unknown"
    try:
        found = mlflow.MlflowClient().search_model_versions(f"run_id = '{run_id}'")
    except Exception:  # any registry trouble: the answer itself is still good
        return "unknown"
    return str(found[0].version) if len(found) == 1 else "unknown"
