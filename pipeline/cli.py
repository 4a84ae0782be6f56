"""`python -m pipeline ...`: the project's command line.

Contracts (other tools depend on them):
  validate PATH.csv   exit 0 + one line starting "OK" when clean;
                      exit 1 + one "FAIL <rule>: <detail>" line per failed expectation;
                      exit 2 for a bad invocation or config. Never writes to the curated store.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from pipeline.config import ConfigError, load_config


def _validate(args: argparse.Namespace) -> int:
    from pipeline.validate import validate_file

    report = validate_file(args.path, load_config(args.config))
    if report.success:
        print(f"OK {args.path}: {report.checked} expectations passed")
        return 0
    for failure in report.failures:
        print(failure)
    return 1


def _dag_test(args: argparse.Namespace) -> int:
    import datetime as dt

    from pipeline.airflow_run import dag_test

    return dag_test(load_config(args.config), args.dag_id, dt.date.fromisoformat(args.date))


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
    p.set_defaults(func=_validate)
    p = sub.add_parser("dag-test", help="run a DAG once through Airflow, log to state/logs/")
    p.add_argument("dag_id")
    p.add_argument("date", help="logical date, YYYY-MM-DD")
    p.set_defaults(func=_dag_test)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
