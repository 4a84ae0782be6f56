"""One typed, frozen configuration: `pipeline.yaml` plus environment overrides.

Overrides:
  PIPELINE_CONFIG                 path of the YAML file (default: pipeline.yaml at the project root)
  PIPELINE__<SECTION>__<KEY>=v    any key, e.g. PIPELINE__TUNE__N_TRIALS=3 (value parsed as YAML)
  MLFLOW_TRACKING_URI             tracking.uri, as MLflow users expect
  OPTUNA_STORAGE                  tune.storage
Relative paths resolve against the directory that holds the YAML file.
`tickers: null` means every ticker of the universe (see `universe_tickers`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from pipeline.layout import BadTicker, Layout, check_ticker
from pipeline.sections import (
    FeatureConfig,
    ModelConfig,
    MonitoringConfig,
    RegistryConfig,
    RetentionConfig,
    ServingConfig,
    SourceConfig,
    StackConfig,
    TrackingConfig,
    TuneConfig,
    UIConfig,
    ValidationConfig,
    _Section,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "pipeline.yaml"
ENV_PREFIX = "PIPELINE__"


class ConfigError(ValueError):
    """A bad configuration value; the message names the key and the value."""


# The embedded universes (source.kind: sample): each one's folder and its files' suffix.
SAMPLES_DIR = Path(__file__).resolve().parent / "data" / "samples"
Universe = Literal["default", "sp500"]
EMBEDDED: dict[str, tuple[Path, str]] = {
    "default": (SAMPLES_DIR, ".csv"),  # AAPL, GOOG, IBM, MSFT (README.md there)
    "sp500": (SAMPLES_DIR / "sp500", ".csv.gz"),  # 394 S&P 500 stocks (README.md there)
}


def embedded_tickers(universe: str = "default") -> list[str]:
    """The tickers an embedded universe ships, sorted."""
    folder, suffix = EMBEDDED[universe]
    return sorted(p.name.removesuffix(suffix) for p in folder.glob(f"*{suffix}"))


def landed_tickers(csv_dir: Path) -> list[str]:
    """Every <TICKER>.csv in a landing folder, sorted; a name that is not a ticker is refused
    (it would otherwise become a ticker of every run)."""
    if not csv_dir.is_dir():
        raise ValueError(
            f"source.csv_dir {csv_dir} is not a folder (tickers: null takes every "
            "<TICKER>.csv in it): create it, or list the tickers"
        )
    found = sorted(p for p in csv_dir.glob("*.csv") if p.is_file())
    for path in found:
        try:
            check_ticker(path.stem)
        except BadTicker as exc:
            raise ValueError(f"{path}: the file name is not a ticker's: {exc}") from None
        if path.stem == "universe":
            raise ValueError(f"{path}: 'universe' names the universe model, not a ticker")
    if not found:
        raise ValueError(f"source.csv_dir {csv_dir} holds no <TICKER>.csv file")
    return [p.stem for p in found]


def universe_tickers(universe: str, source: SourceConfig, base_dir: Path) -> list[str]:
    """What `tickers: null` means: the embedded universe's tickers (source.kind: sample),
    every <TICKER>.csv in source.csv_dir (csv); yfinance has no list of its own."""
    if source.kind == "sample":
        return embedded_tickers(universe)
    if source.kind == "csv":
        csv_dir = source.csv_dir if source.csv_dir.is_absolute() else base_dir / source.csv_dir
        return landed_tickers(csv_dir)
    raise ValueError("source.kind yfinance has no list of tickers of its own: name them")


class Config(_Section):
    # universe, source and base_dir come first: `tickers: null` is resolved from them
    universe: Universe = "default"
    source: SourceConfig = SourceConfig()
    base_dir: Path = PROJECT_ROOT
    # null (the default): every ticker of the universe; always a list once loaded
    tickers: list[str] = Field(default=None, min_length=1, validate_default=True)
    state_dir: Path = Path("state")
    # tickers per task of the DAGs (pipeline/orchestration/chunks.py): a task costs about a
    # second whatever it holds, so 394 tickers run as 4 chunks, the default four as one
    chunk_size: int = Field(default=100, ge=1)
    validation: ValidationConfig = ValidationConfig()
    features: FeatureConfig = FeatureConfig()
    model: ModelConfig = ModelConfig()
    tune: TuneConfig = TuneConfig()
    tracking: TrackingConfig = TrackingConfig()
    registry: RegistryConfig = RegistryConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    serving: ServingConfig = ServingConfig()
    ui: UIConfig = UIConfig()
    stack: StackConfig = StackConfig()
    retention: RetentionConfig = RetentionConfig()

    @field_validator("tickers", mode="before")
    @classmethod
    def _null_is_the_universe(cls, tickers: Any, info: ValidationInfo) -> Any:
        if tickers is not None:
            return tickers
        bad = [k for k in ("universe", "source", "base_dir") if k not in info.data]
        if bad:  # refused on their own: their messages say why
            raise ValueError(f"null lists the universe's tickers, which needs a valid {bad[0]}")
        return universe_tickers(info.data["universe"], info.data["source"], info.data["base_dir"])

    @field_validator("tickers")
    @classmethod
    def _tickers_are_symbols(cls, tickers: list[str]) -> list[str]:
        if "universe" in tickers:
            raise ValueError("'universe' names the universe model (model.scope), not a ticker")
        return [check_ticker(t) for t in tickers]

    def resolve(self, path: Path) -> Path:
        return path if path.is_absolute() else (self.base_dir / path)

    # Plain properties, not cached: model_copy(update=...) copies a cached value along,
    # and a copy with another state_dir would go on writing to the original's.
    @property
    def state(self) -> Path:
        return self.resolve(self.state_dir)

    @property
    def layout(self) -> Layout:
        """Every path under the state directory (see pipeline/layout.py)."""
        return Layout(self.state)

    @property
    def tracking_uri(self) -> str:
        return _resolve_sqlite_url(self.tracking.uri, self.base_dir)

    @property
    def optuna_storage(self) -> str:
        return _resolve_sqlite_url(self.tune.storage, self.base_dir)


def _resolve_sqlite_url(url: str, base: Path) -> str:
    """Make `sqlite:///relative.db` relative to the config's directory, not the cwd."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/"):
        return prefix + str(base / url[len(prefix) :])
    return url


def _set_path(tree: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        tree = tree.setdefault(key, {})
        if not isinstance(tree, dict):
            raise ConfigError(f"config key {'.'.join(keys)}: {key} is not a section")
    tree[keys[-1]] = value


def env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    # The conventional names first, so an explicit PIPELINE__ key wins over them.
    if environ.get("MLFLOW_TRACKING_URI"):
        _set_path(tree, ["tracking", "uri"], environ["MLFLOW_TRACKING_URI"])
    if environ.get("OPTUNA_STORAGE"):
        _set_path(tree, ["tune", "storage"], environ["OPTUNA_STORAGE"])
    for name, raw in sorted(environ.items()):
        if name.startswith(ENV_PREFIX):
            keys = [k.lower() for k in name[len(ENV_PREFIX) :].split("__")]
            try:
                value = yaml.safe_load(raw)
            except yaml.YAMLError as exc:
                problem = str(exc).splitlines()[0]
                raise ConfigError(
                    f"config key {'.'.join(keys)} = {raw!r} ({name}): {problem}"
                ) from None
            _set_path(tree, keys, value)
    return tree


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _describe(err: ValidationError, raw: dict[str, Any], source: str) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        value = e.get("input")
        lines.append(f"config key {key} = {value!r}: {e['msg']} ({source})")
    return "\n".join(lines)


def load_config(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Config:
    """Load, merge env overrides and validate; raise ConfigError naming the bad key."""
    environ = dict(os.environ) if environ is None else environ
    cfg_path = Path(path or environ.get("PIPELINE_CONFIG") or DEFAULT_CONFIG)
    if not cfg_path.is_file():
        raise ConfigError(f"config file not found: {cfg_path}")
    try:
        raw = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {cfg_path} is not valid YAML: {exc}"[:500]) from None
    except OSError as exc:
        raise ConfigError(f"config file {cfg_path}: {exc.strerror or exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {cfg_path} must hold a mapping, got {type(raw).__name__}")
    merged = _merge(raw, env_overrides(environ))
    merged.setdefault("base_dir", str(cfg_path.resolve().parent))
    try:
        return Config.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, merged, f"{cfg_path} + {ENV_PREFIX}* env")) from None


def throwaway_env(root: Path) -> dict[str, str]:
    """Overrides that put every store (state, MLflow, Optuna) under `root`.

    For tests and benchmarks: they must never write to the project's own stores.
    """
    return {
        "PIPELINE__STATE_DIR": str(root / "state"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlruns' / 'mlflow.db'}",
        "PIPELINE__TRACKING__ARTIFACT_ROOT": str(root / "mlruns" / "artifacts"),
        "OPTUNA_STORAGE": f"sqlite:///{root / 'optuna.db'}",
        "PIPELINE__STACK__DIR": str(root / "stack"),
    }


def throwaway_config(root: Path, env: dict[str, str] | None = None, **keys: object) -> Config:
    """The default config with its stores under `root` (see throwaway_env), ignoring the
    process environment; `env` adds variables, `keys` set config keys (tune__n_trials=2)."""
    overrides = {f"{ENV_PREFIX}{k.upper()}": str(v) for k, v in keys.items()}
    return load_config(environ={**throwaway_env(root), **(env or {}), **overrides})
