"""What each `python -m pipeline` command does, given its parsed arguments (pipeline/cli.py
parses them and states the contracts: exit codes, output lines). Each handler imports what
it needs when it runs, so `--help` and a bad argument cost no heavy imports."""

from __future__ import annotations

import argparse
import json
import os
import sys

from pipeline.config import load_config

EXIT_REFUSED = 3  # a gate or a check said no
EXIT_USAGE = 2  # a bad argument, config or day


def validate(args: argparse.Namespace) -> int:
    from pipeline.data.suite import validate_file

    report = validate_file(args.path, load_config(args.config))
    if report.success:
        print(f"OK {args.path}: {report.checked} expectations passed")
        return 0
    for failure in report.failures:
        print(failure)
    return 1


def dag_test(args: argparse.Namespace) -> int:
    from pipeline.operations import runlock
    from pipeline.operations.operate import day_problem
    from pipeline.orchestration.airflow_run import dag_test_command

    cfg = load_config(args.config)
    if problem := day_problem(cfg, args.date):
        print(f"refused: {problem}", file=sys.stderr)
        return EXIT_USAGE
    with runlock.hold(cfg, f"pipeline dag-test {args.dag_id} {args.date}"):
        return dag_test_command(cfg, args.dag_id, args.date)


def daily(args: argparse.Namespace) -> int:
    from pipeline.operations import runlock
    from pipeline.operations.operate import run_day

    cfg = load_config(args.config)
    with runlock.hold(cfg, f"pipeline daily {args.date}"):
        return run_day(cfg, args.date)


def report(args: argparse.Namespace) -> int:
    from pipeline.operations.daily import report_path
    from pipeline.reporting import page

    cfg = load_config(args.config)
    if not report_path(cfg, args.date).exists():
        print(
            f"no report for {args.date} under {cfg.layout.root}: run that day first "
            f"(make run DATE={args.date})",
            file=sys.stderr,
        )
        return EXIT_USAGE
    print(page.write(cfg, args.date))
    return 0


def doctor(args: argparse.Namespace) -> int:
    from pipeline.operations import runlock
    from pipeline.operations.orphans import close_orphans
    from pipeline.orchestration.airflow_run import ensure_airflow_db

    cfg = load_config(args.config)
    with runlock.hold(cfg, "pipeline doctor"):  # no run alive: whatever is open is dead
        ensure_airflow_db()
        closed = close_orphans(cfg)
    for line in closed:
        print(f"closed: {line}")
    print(f"{len(closed)} left open by runs that died, closed" if closed else "nothing to close")
    return 0


def clean(args: argparse.Namespace) -> int:
    from pipeline.config import PROJECT_ROOT
    from pipeline.operations import runlock

    return runlock.clean([PROJECT_ROOT / "state", PROJECT_ROOT / "mlruns"])


def replay(args: argparse.Namespace) -> int:
    from pipeline.operations.replay import main

    if args.end < args.start:
        print(f"--to {args.end} is before --from {args.start}", file=sys.stderr)
        return EXIT_USAGE
    from pipeline.operations import runlock

    cfg = load_config(args.config)
    with runlock.hold(cfg, f"pipeline replay --from {args.start} --to {args.end}"):
        return main(cfg, args.start, args.end)


def run(args: argparse.Namespace) -> int:
    from pipeline.data.validate import ValidationFailed
    from pipeline.orchestration.local_run import run_csv

    try:
        summary = run_csv(load_config(args.config), args.csv, args.ticker)
    except ValidationFailed as exc:
        print(exc, file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0


def promote(args: argparse.Namespace) -> int:
    from pipeline.lifecycle import promotion
    from pipeline.lifecycle.audit import default_actor
    from pipeline.lifecycle.registry import PromotionRefused

    cfg = load_config(args.config)
    actor = args.actor or default_actor()
    if args.force and not args.reason and cfg.registry.force_requires_reason:
        print(
            f"{args.command} --force needs --reason here (registry.force_requires_reason)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    reason = args.reason or f"manual {args.command}"
    try:
        if args.command == "promote":
            done = promotion.promote(cfg, args.ticker, str(args.version), reason, actor, args.force)
        else:
            done = promotion.rollback(
                cfg,
                args.ticker,
                reason,
                actor,
                args.force,
                str(args.version) if args.version else None,
            )
    except PromotionRefused as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_REFUSED
    print(json.dumps(done))
    return 0


def audit(args: argparse.Namespace) -> int:
    from pipeline.lifecycle.audit import audit_trail
    from pipeline.lifecycle.registry import model_name

    cfg = load_config(args.config)
    name = model_name(cfg, args.ticker)
    trail = audit_trail(cfg, name)
    if not trail:  # a mistyped store or ticker would otherwise print nothing at all
        print(
            f"no audit trail for {name} in {cfg.tracking_uri} "
            f"(experiment {cfg.tracking.experiment}_audit): nothing was ever promoted, "
            "rolled back or refused there; is this the store you meant?",
            file=sys.stderr,
        )
        return 1
    for event in trail:
        print(json.dumps(event))
    return 0


def serve(args: argparse.Namespace) -> int:
    from pipeline.lifecycle.registry import production_version
    from pipeline.serving.production import serve

    cfg = load_config(args.config)
    if production_version(cfg, args.ticker) is None:
        print(
            f"no production model for {args.ticker} in {cfg.tracking_uri}: run `make run` "
            "first (or promote a version)",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    if args.workers:
        cfg = cfg.model_copy(
            update={"serving": cfg.serving.model_copy(update={"workers": args.workers})}
        )
    return serve(cfg, args.ticker, args.port)


def ui(args: argparse.Namespace) -> int:
    from pipeline.deployment.ui import run
    from pipeline.operations import runlock

    cfg = load_config(args.config)
    with runlock.hold(cfg, "pipeline ui (its scheduler runs the DAGs)"):
        from pipeline.operations.operate import say_closed
        from pipeline.orchestration.airflow_run import ensure_airflow_db

        ensure_airflow_db()
        say_closed(cfg)  # a dead run's DAG run would hold back its DAG (max_active_runs=1)
        return run(cfg)


def stack(args: argparse.Namespace) -> int:
    from pipeline.deployment import stack

    if args.action == "mlflow-users":  # compose's one-shot `mlflow-init` service
        return mlflow_users()
    act = {"up": stack.up, "down": stack.down, "status": stack.status}[args.action]
    return act(load_config(args.config))


def mlflow_users() -> int:
    from pipeline.deployment import deploy

    keys = {
        "MLFLOW_ADMIN_PASSWORD": os.environ.get("MLFLOW_AUTH_ADMIN_PASSWORD", ""),
        "MLFLOW_PIPELINE_PASSWORD": os.environ.get("MLFLOW_TRACKING_PASSWORD", ""),
        "MLFLOW_VIEWER_PASSWORD": os.environ.get("MLFLOW_VIEWER_PASSWORD", ""),
    }
    for name, key in (
        ("MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_ADMIN_PASSWORD"),
        ("MLFLOW_TRACKING_PASSWORD", "MLFLOW_PIPELINE_PASSWORD"),
    ):
        if not keys[key]:
            print(f"{name} is not set", file=sys.stderr)
            return 2
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    try:
        print(json.dumps(deploy.ensure_mlflow_users(uri, keys)))
    except Exception as exc:  # any failure here means: not (yet) reachable; compose retries
        print(f"could not set up MLflow accounts at {uri!r}: {exc}"[:500], file=sys.stderr)
        return 1
    return 0


def backtest(args: argparse.Namespace) -> int:
    from pipeline.evaluation.backtest import Plan
    from pipeline.evaluation.backtest_run import printed, run
    from pipeline.forecasting.model import LSTMParams
    from pipeline.lifecycle.tuned import production_params

    environ = dict(os.environ)
    if args.universe:  # the embedded universe's tickers (with `tickers: null`)
        environ["PIPELINE__UNIVERSE"] = args.universe
    cfg = load_config(args.config, environ)
    tickers, scope = args.tickers or cfg.tickers, args.scope or cfg.model.scope
    known = {}  # --production-params: each model's production version's, where it has one
    for key in (["universe"] if scope == "universe" else tickers) if args.production_params else []:
        if found := production_params(cfg, key):
            known[key] = LSTMParams.from_dict(found[0]), found[1]
    plan = Plan(
        tickers=tickers,
        start=args.start,
        end=args.end,
        refit_every=args.refit_every,
        tune=args.tune,
        scope=scope,
        holdout=tuple(args.holdout or ()),
        known_params=known,
        report_from=args.report_from,
    )
    try:
        summary = run(cfg, plan)
    except ValueError as exc:  # every series left out, a span with no session
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(printed(summary), default=str))
    return 0
