"""`python -m pipeline ...`: the project's command line.

Contracts (other tools depend on them):
  validate PATH.csv   exit 0 + one line starting "OK" when clean;
                      exit 1 + one "FAIL <rule>: <detail>" line per failed expectation;
                      exit 2 for a bad invocation or config. Never writes to the curated store.
  run --csv PATH --ticker T
                      the model half in-process; the last stdout line is one JSON object:
                      model_name, version, promoted, reason, production_version, run_id,
                      first_test_date, last_test_date, test_days, model{mae,mase,
                      directional_accuracy}, naive{...}, work_dir (its data, kept). Exit 1
                      if the CSV fails validation.
  promote --ticker T --version N [--force] / rollback --ticker T [--force]
                      exit 0 + a JSON line when done; exit 3 when the gate refuses.
Every command: exit 2 for a bad argument or config (a ticker must be a plain symbol),
exit 1 with one `error: ...` line when a store or server cannot be used (unreachable
tracking server, unwritable state directory); never a traceback for those.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
from collections.abc import Sequence
from typing import get_args

from pipeline import commands
from pipeline.commands import EXIT_USAGE
from pipeline.config import ConfigError, Universe
from pipeline.layout import BadTicker, check_ticker
from pipeline.operations.runlock import Busy
from pipeline.reachability import TrackingUnreachable


def date_arg(value: str) -> dt.date:
    """argparse type: a YYYY-MM-DD date."""
    try:
        if len(value) == 10:  # fromisoformat also takes 20130301 and week dates
            return dt.date.fromisoformat(value)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"{value[:40]!r} is not a date (YYYY-MM-DD)")


def positive_int(value: str) -> int:
    """argparse type: 1, 2, 3, ..."""
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value[:40]!r} is not a positive whole number")
    return int(value)


def port_arg(value: str) -> int:
    """argparse type: a TCP port, 1-65535."""
    port = positive_int(value)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port (1-65535)")
    return port


def ticker_arg(value: str) -> str:
    """argparse type: a plain ticker symbol, or a usage error (exit 2) saying why."""
    try:
        return check_ticker(value)
    except BadTicker as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help="YAML config (default: $PIPELINE_CONFIG or pipeline.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="validate an OHLCV CSV with the project's GX suite")
    p.add_argument("path")
    p.set_defaults(func=commands.validate)

    p = sub.add_parser("dag-test", help="run a DAG once through Airflow, log to state/logs/")
    p.add_argument("dag_id")
    p.add_argument("date", type=date_arg, help="logical date, YYYY-MM-DD")
    p.set_defaults(func=commands.dag_test)

    p = sub.add_parser(
        "daily",
        help="one trading day as scheduled: the retrain if nothing can serve, the daily DAG, "
        "the retrain it asks for; progress and the day's table (exit 0 ok, 1 a ticker "
        "failed, 2 a DAG failed)",
    )
    p.add_argument("date", type=date_arg, help="the trading day, YYYY-MM-DD")
    p.set_defaults(func=commands.daily)

    p = sub.add_parser(
        "report",
        help="write a day's report page (state/reports/daily/DAY.html) from its stored "
        "report and forecasts; prints its path (exit 2 when the day has no report)",
    )
    p.add_argument("date", type=date_arg, help="a day that has run, YYYY-MM-DD")
    p.set_defaults(func=commands.report)

    p = sub.add_parser(
        "replay", help="run the schedule day after day on the data (daily, retrains, weekly)"
    )
    p.add_argument("--from", dest="start", required=True, type=date_arg, help="first day")
    p.add_argument("--to", dest="end", required=True, type=date_arg, help="last day")
    p.set_defaults(func=commands.replay)

    p = sub.add_parser("run", help="validate, tune, train, evaluate, register, promote in-process")
    p.add_argument("--csv", required=True, help="OHLCV CSV: Date,Open,High,Low,Close,Volume")
    p.add_argument("--ticker", required=True, type=ticker_arg)
    p.set_defaults(func=commands.run)

    p = sub.add_parser("backtest", help="walk-forward backtest of the model against every baseline")
    p.add_argument("--tickers", nargs="+", type=ticker_arg, help="default: the configured tickers")
    p.add_argument("--start", type=date_arg, default=dt.date(2008, 8, 1), help="first session")
    p.add_argument("--end", type=date_arg, help="last session (default: the newest bar)")
    p.add_argument(
        "--refit-every", type=positive_int, default=63, help="sessions between refits (63)"
    )
    p.add_argument(
        "--tune", action="store_true", help="tune at every refit (default: reuse tuned params)"
    )
    p.add_argument(
        "--scope",
        choices=["ticker", "universe"],
        help="a network per ticker, or one for all of them (default: model.scope)",
    )
    p.add_argument(
        "--universe",
        choices=list(get_args(Universe)),
        help="an embedded universe (default: pipeline.yaml's); its tickers unless --tickers",
    )
    p.add_argument(
        "--report-from",
        type=date_arg,
        help="the final figure's first day: the summary's `periods` score the days before "
        "it (where variants are compared) and from it apart",
    )
    p.add_argument(
        "--holdout",
        nargs="+",
        type=ticker_arg,
        help="universe scope: tickers forecast but never trained on (a cold start)",
    )
    p.add_argument(
        "--production-params",
        action="store_true",
        help="reuse the production version's tuned parameters (tuned on later data: "
        "hyperparameter look-ahead) instead of tuning at the first refit",
    )
    p.set_defaults(func=commands.backtest)

    for name, text in (
        ("promote", "point `production` at a version (gate applies)"),
        ("rollback", "point `production` back at the previous version"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--ticker", default="GOOG", type=ticker_arg)
        p.add_argument(
            "--version",
            type=positive_int,
            required=name == "promote",
            help="version number" + ("" if name == "promote" else " (default: previous)"),
        )
        p.add_argument("--reason", help=f"why, for the audit trail (default: manual {name})")
        p.add_argument(
            "--actor", help="who asks (default: the OS user; the OS user is recorded too)"
        )
        p.add_argument("--force", action="store_true", help="skip the checks (recorded)")
        p.set_defaults(func=commands.promote)

    p = sub.add_parser(
        "serve", help="serve the production model over REST (MLflow's scoring app), following it"
    )
    p.add_argument("--ticker", default="GOOG", type=ticker_arg)
    p.add_argument("--port", type=port_arg, help="default: serving.port")
    p.add_argument(
        "--workers", type=positive_int, help="worker processes (default: serving.workers)"
    )
    p.set_defaults(func=commands.serve)

    p = sub.add_parser("ui", help="Airflow, MLflow and Optuna dashboards on localhost")
    p.set_defaults(func=commands.ui)

    p = sub.add_parser("stack", help="the scale-out on local PostgreSQL + Redis (make stack)")
    p.add_argument("action", choices=["up", "down", "status", "mlflow-users"])
    p.set_defaults(func=commands.stack)

    p = sub.add_parser(
        "doctor",
        help="close what runs that died left open (Airflow DAG runs, MLflow runs); says what",
    )
    p.set_defaults(func=commands.doctor)

    p = sub.add_parser(
        "clean",
        help="remove run-time state (state/, mlruns/ content) unless a run holds it (exit 2)",
    )
    p.set_defaults(func=commands.clean)

    p = sub.add_parser("audit", help="print the promotion/rollback trail as JSON lines")
    p.add_argument("--ticker", default="GOOG", type=ticker_arg)
    p.set_defaults(func=commands.audit)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from pipeline.orchestration.airflow_run import AIRFLOW_DEFAULTS, stop_with_parent

    stop_with_parent()
    for key, value in AIRFLOW_DEFAULTS.items():
        os.environ.setdefault(key, value)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Busy as exc:  # another run holds the state
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # Ctrl-C between the runs a command starts: no traceback
        print("interrupted", file=sys.stderr)
        return 130
    except TrackingUnreachable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a store that cannot be read or written: say which, no traceback
        where = f" {exc.filename}" if exc.filename else ""
        print(f"error: cannot use{where}: {exc.strerror or exc}", file=sys.stderr)
        return 1
