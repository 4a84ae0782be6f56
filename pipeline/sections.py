"""The configuration's sections: every key, its default and its bounds (pipeline.yaml
documents the same keys; pipeline/config.py assembles them into one frozen Config)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SourceConfig(_Section):
    kind: Literal["sample", "csv", "yfinance"] = "sample"
    csv_dir: Path = Path("landing")
    lookback_days: int = Field(default=30, ge=1)
    # sample and csv: a day's stored pull holds the bars after the curated table's newest
    # one plus its last overlap_sessions bars again, so a vendor's revision of them (or a
    # re-basing of adjusted prices, which takes two common days to see) is still caught
    overlap_sessions: int = Field(default=5, ge=2)
    # corporate actions the vendor did not adjust for (pipeline/data/actions.py): a CSV of
    # Date,Ticker,Dividends,Stock Splits as yfinance's Ticker.actions gives, plus Ticker
    actions_file: Path | None = None


class ValidationConfig(_Section):
    # |log close-to-close move| of the adjusted bars above this is implausible: 1.0 is a fall
    # of 63 % or a rise of 172 % (AAPL's real 52 % fall of 2000-09-29 is log 0.73).
    max_abs_log_move: float = Field(default=1.0, gt=0, le=10)
    min_history_rows: int = Field(default=250, ge=1)
    calendar: str = "XNYS"
    check_freshness: bool = True

    @field_validator("calendar")
    @classmethod
    def known_calendar(cls, name: str) -> str:
        """An exchange calendar exchange_calendars knows (XNYS, XLON, ...), not a typo that
        would surface as a traceback in the middle of a run."""
        from exchange_calendars import get_calendar_names

        known = get_calendar_names(include_aliases=True)
        if name not in known:
            near = [k for k in known if k[:2] == name[:2]][:8]
            hint = f" (like {', '.join(near)})" if near else ""
            raise ValueError(f"unknown exchange calendar {name!r}; use its ISO MIC code{hint}")
        return name


class RetentionConfig(_Section):
    """How many days (counted back from the run day) old state is kept before
    pipeline/data/compaction.py removes it; null keeps everything. The newest features
    folder of each ticker or model is always kept."""

    raw_days: int | None = Field(default=30, ge=0)  # state/raw/<TICKER>/<DATE>.csv
    features_days: int | None = Field(default=30, ge=0)  # state/features/<KEY>/<DATE>/
    pages_days: int | None = Field(default=30, ge=0)  # state/reports/daily/<DATE>.html


class FeatureConfig(_Section):
    volatility_window: int = Field(default=20, ge=2)
    volume_window: int = Field(default=20, ge=2)
    val_fraction: float = Field(default=0.15, gt=0, lt=0.5)
    test_fraction: float = Field(default=0.15, gt=0, lt=0.5)


Choices = Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1)]
Fraction = Annotated[float, Field(ge=0, lt=1)]
Rate = Annotated[float, Field(gt=0, le=1)]


class SearchSpace(_Section):
    """What Optuna may pick: every choice a positive integer, every range low <= high."""

    units: Choices = [16, 32, 64, 128]
    layers: Choices = [1, 2]
    batch_size: Choices = [32, 64, 128]
    window: Choices = [10, 20, 40, 60]
    dropout: tuple[Fraction, Fraction] = (0.0, 0.4)
    learning_rate: tuple[Rate, Rate] = (1e-4, 1e-2)

    @field_validator("dropout", "learning_rate")
    @classmethod
    def _low_then_high(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] > v[1]:
            raise ValueError(f"the range [{v[0]}, {v[1]}] has its low end above its high end")
        return v


class TuneConfig(_Section):
    n_trials: int = Field(default=8, ge=1)
    timeout_s: float = Field(default=300, gt=0)
    workers: int = Field(default=1, ge=1)  # parallel tuning tasks per ticker (shared study)
    max_epochs: int = Field(default=15, ge=1)
    patience: int = Field(default=3, ge=1)
    # An epoch is this many training windows sampled across tickers (every window when
    # there are fewer), so its cost is set here, not by the universe's size; validation is
    # a fixed, seeded sample of val_windows (pipeline/forecasting/sampling.py).
    windows_per_epoch: int = Field(default=15_000, ge=1)
    val_windows: int = Field(default=10_000, ge=1)
    seed: int = 42
    storage: str = "sqlite:///state/optuna.db"
    # A running trial beats every heartbeat_interval_s; one silent for grace_period_s lost its
    # worker: it is failed and queued again (at most stale_retries times per trial).
    heartbeat_interval_s: int = Field(default=30, ge=1)
    grace_period_s: int = Field(default=120, ge=2)
    stale_retries: int = Field(default=1, ge=0)
    # Trials that fail for their own parameters (diverged, window longer than the data) are
    # skipped; this many in a row stop the study: then something fails them all.
    max_failed_in_a_row: int = Field(default=3, ge=1)
    space: SearchSpace = SearchSpace()

    @model_validator(mode="after")
    def _grace_outlasts_heartbeat(self) -> TuneConfig:
        if self.grace_period_s <= self.heartbeat_interval_s:
            raise ValueError(
                f"grace_period_s ({self.grace_period_s}) must exceed heartbeat_interval_s "
                f"({self.heartbeat_interval_s}), or every live trial looks dead"
            )
        return self


class TrackingConfig(_Section):
    uri: str = "sqlite:///mlruns/mlflow.db"
    artifact_root: Path = Path("mlruns/artifacts")
    experiment: str = "price_pipeline"
    # A tracking server (http[s] URI) that does not answer within connect_timeout_s, after
    # connect_retries more tries, is reported as unreachable instead of waited on for minutes.
    connect_timeout_s: float = Field(default=5.0, gt=0, le=300)
    connect_retries: int = Field(default=2, ge=0, le=10)


class RegistryConfig(_Section):
    model_prefix: str = "price_lstm"
    # Point rule: MASE at most 1 - naive_margin + point_tolerance, and not significantly
    # worse than naive (Diebold-Mariano at `significance`).
    naive_margin: float = Field(default=0.0, ge=0, lt=1)
    point_tolerance: float = Field(default=0.005, ge=0, lt=1)
    significance: float = Field(default=0.05, gt=0, lt=1)
    # Interval rule: 80 % interval score at most the best baseline's (naive, EWMA, HAR,
    # GJR-GARCH-t) x (1 + interval_tolerance), and 80 % coverage within coverage_tolerance.
    interval_tolerance: float = Field(default=0.0, ge=0, lt=1)
    coverage_tolerance: float = Field(default=0.05, gt=0, lt=0.8)
    # A model judged on several tickers together (the universe model) is also refused if
    # on any one ticker its 80 % interval score is worse than naive's by more than this.
    ticker_tolerance: float = Field(default=0.02, ge=0, lt=1)
    production_tolerance: float = Field(default=0.0, ge=0, lt=1)
    # With no production model, a version the gate refuses is not the end of the day's
    # forecasts: HAR is put to the gate too, and the best of the two serves, tagged as a
    # fallback when neither passed (pipeline/lifecycle/fallback.py). false: none serves.
    serve_fallback: bool = True
    # Versions never promoted are deleted (with their artifacts) by the retrain once their
    # run day is this many days old (pipeline/lifecycle/retention.py); null keeps every version.
    keep_unpromoted_days: int | None = Field(default=30, ge=0)
    # `promote/rollback --force` skips the gate; a deployment can insist on a written reason.
    force_requires_reason: bool = False


class MonitoringConfig(_Section):
    """window_days: realised forecasts the rolling checks use. drift_*: the input drift
    check (pipeline/monitoring/drift.py): the recent sessions it looks at, and the share of them
    outside the training range of an input that fires it."""

    window_days: int = Field(default=5, ge=1)
    drift_window: int = Field(default=63, ge=5)
    drift_outside: float = Field(default=0.1, gt=0.0, le=1.0)
    # a reason a retrain ran for is not asked again for this many calendar days
    retrain_cooldown_days: int = Field(default=7, ge=0)
    # the universe model: its inputs drifted when this share of its stocks' did
    universe_drift_share: float = Field(default=0.25, gt=0.0, le=1.0)


class ServingConfig(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=5001, ge=1, le=65535)
    max_rows: int = Field(default=5000, ge=1)
    reload_interval_s: float = Field(default=5.0, gt=0)
    workers: int = Field(default=1, ge=1, le=64)  # scoring server processes
    # Refused before parsing: a body over max_body_bytes (413), and requests beyond
    # max_in_flight per worker (a quick 503, not a 60 s queue).
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_in_flight: int = Field(default=4, ge=1)
    request_timeout_s: float = Field(default=10.0, gt=0)  # then 504
    shutdown_grace_s: float = Field(default=3.0, ge=0)  # SIGTERM: in-flight work gets this long
    # Answered requests' network outputs a worker keeps (pipeline/forecasting/memo.py),
    # in MB: a stock asked every session with 250 bars takes about 13 KB; 0 keeps none.
    remembered_mb: float = Field(default=32.0, ge=0)


class UIConfig(_Section):
    """`make ui`: the three dashboards, on localhost unless told otherwise."""

    host: str = "127.0.0.1"
    airflow_port: int = Field(default=8080, ge=1, le=65535)
    mlflow_port: int = Field(default=5000, ge=1, le=65535)
    optuna_port: int = Field(default=8081, ge=1, le=65535)


class StackDatabases(_Section):
    """Databases `make stack` creates on the local PostgreSQL (one per store)."""

    airflow: str = "pipeline_airflow"
    mlflow: str = "pipeline_mlflow"
    optuna: str = "pipeline_optuna"

    @model_validator(mode="after")
    def _plain_names(self) -> StackDatabases:
        for name in (self.airflow, self.mlflow, self.optuna):
            if not name.replace("_", "").isalnum() or not name[0].isalpha() or len(name) > 63:
                raise ValueError(f"database name {name!r}: letters, digits and _ only")
        return self


class ModelConfig(_Section):
    """What the network is built on. scope: one network for every configured ticker
    (`universe`, registered as <prefix>_universe; it serves any ticker) or one per ticker.
    base: the scale an untrained net forecasts, which training multiplies: `har` (HAR on
    range-based variance, fitted on the training rows) or `trailing` (the trailing std of
    log returns: the naive interval). conformal_*: adaptive conformal widths
    (pipeline/forecasting/conformal.py) over the model's misses in the `conformal_lookback` sessions
    before each forecast; step 0 turns them off. combine_har: the network's distribution
    combined with HAR's (fitted on the same training rows), before the adaptive widths."""

    scope: Literal["universe", "ticker"] = "universe"
    base: Literal["har", "trailing"] = "trailing"
    combine_har: bool = True
    conformal_step: float = Field(default=0.01, ge=0.0, le=1.0)
    conformal_lookback: int = Field(default=250, ge=0, le=2000)


class StackConfig(_Section):
    """`make stack`: the scale-out on this machine's PostgreSQL and Redis (no Docker).

    Its processes get the environment of docker-compose.yaml's `x-pipeline-env`,
    filled in with these values (pipeline/deployment/deploy.py): one description, two scales.
    """

    dir: Path = Path("state/stack")  # logs, PID files, secrets, AIRFLOW_HOME, shared state
    postgres_host: str = "127.0.0.1"
    postgres_port: int = Field(default=5432, ge=1, le=65535)
    postgres_user: str = "postgres"
    databases: StackDatabases = StackDatabases()
    redis_host: str = "127.0.0.1"
    redis_port: int = Field(default=6379, ge=1, le=65535)
    redis_db: int = Field(default=0, ge=0, le=15)
    host: str = "127.0.0.1"  # where the Airflow API and MLflow servers listen
    airflow_port: int = Field(default=8080, ge=1, le=65535)
    mlflow_port: int = Field(default=5000, ge=1, le=65535)
    celery_workers: int = Field(default=2, ge=1, le=8)
    tune_workers: int = Field(default=2, ge=1)  # tune.workers for the stack's runs
    task_retry_delay_s: int = Field(default=300, ge=1)  # Airflow's first retry delay
    task_heartbeat_timeout_s: int = Field(default=300, ge=10)  # a silent task = dead worker
    # per service; they start together and share the cores, so the last waits longest
    start_timeout_s: float = Field(default=300, gt=0)
