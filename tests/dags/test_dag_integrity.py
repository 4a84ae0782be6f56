import itertools
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline import schedule
from pipeline.orchestration import steps

DAGS = Path(__file__).parents[2] / "dags"


@pytest.fixture(scope="module")
def bag(airflow_db: Path) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    return bag


def step_order(dag: Any) -> list[str]:
    """The DAG's step tasks, in the order its dependencies run them."""
    names = [t for t in dag.task_ids if t in steps.STEPS]
    return sorted(names, key=lambda t: len(dag.get_task(t).get_flat_relatives(upstream=True)))


def test_dags_load_without_errors(bag: Any) -> None:
    for dag_id in schedule.DAGS:
        assert bag.get_dag(dag_id) is not None, dag_id
    for dag_id in (schedule.DAILY, schedule.RETRAIN):
        dag = bag.get_dag(dag_id)
        assert dag.default_args["retries"] >= 1 and dag.default_args["retry_exponential_backoff"]


def test_the_daily_dag_runs_each_chunks_chain_on_its_own_then_reports(bag: Any) -> None:
    dag = bag.get_dag(schedule.DAILY)
    chain = [f"chunk.{name}" for name in steps.DAILY_STEPS]
    for a, b in itertools.pairwise(chain):  # within a chunk's group, in order
        assert dag.get_task(b).upstream_task_ids == {a}, (a, b)
    report = dag.get_task("report")
    assert report.trigger_rule == "all_done" and chain[-1] in report.upstream_task_ids
    # one event for the day, from one unmapped task, on the asset the retrain DAG waits for
    signal = dag.get_task("request_retrain")
    assert [o.name for o in signal.outlets] == [schedule.RETRAIN_ASSET]
    assert dag.get_task("all_tickers_ok").trigger_rule == "all_done"


def test_the_retrain_dag_runs_weekly_or_on_the_daily_request(bag: Any) -> None:
    import pendulum
    from airflow.timetables.base import DataInterval, TimeRestriction

    dag = bag.get_dag(schedule.RETRAIN)
    from airflow.serialization.encoders import coerce_to_core_timetable

    assert type(dag.timetable).__name__ == "AssetOrTimeSchedule"
    assert dag.timetable.asset_condition.name == schedule.RETRAIN_ASSET
    timetable = coerce_to_core_timetable(dag.timetable)  # what the scheduler runs
    # the calendar half: once a week, Saturday 06:00 New York
    friday = pendulum.datetime(2013, 3, 1, 18, tz="America/New_York")
    after = DataInterval(friday, friday)
    nxt = timetable.next_dagrun_info(
        last_automated_data_interval=after, restriction=TimeRestriction(None, None, True)
    )
    assert nxt is not None
    when = nxt.run_after.in_timezone("America/New_York")
    assert (when.date().isoformat(), when.hour, when.minute) == ("2013-03-02", 6, 0)  # a Saturday
    again = timetable.next_dagrun_info(
        last_automated_data_interval=nxt.data_interval,
        restriction=TimeRestriction(None, None, True),
    )
    assert again is not None and again.run_after - nxt.run_after == pendulum.duration(days=7)


def test_the_retrain_dag_runs_the_model_steps_in_order(bag: Any) -> None:
    """The retrain DAG and `python -m pipeline run` take their order from
    pipeline/orchestration/steps.py."""
    dag = bag.get_dag(schedule.RETRAIN)
    order = [*steps.DATA_STEPS, *steps.MODEL_STEPS]
    assert step_order(dag) == order
    for a, b in itertools.pairwise(order):  # each step waits for the one before
        assert a in dag.get_task(b).get_flat_relative_ids(upstream=True), (a, b)
    # the fanned-out step is mapped over model x worker; one carry per model goes on
    assert "tune_workers" in dag.get_task(steps.FAN_OUT).upstream_task_ids
    assert "per_model" in dag.get_task(steps.FAN_OUT).downstream_task_ids


def test_importing_dag_files_stays_cheap() -> None:
    heavy = ["tensorflow", "keras", "mlflow", "optuna", "great_expectations", "pandas"]
    code = (
        "import importlib.util, sys, pathlib\n"
        f"for f in sorted(pathlib.Path({str(DAGS)!r}).glob('*.py')):\n"
        "    spec = importlib.util.spec_from_file_location(f.stem, f)\n"
        "    spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_the_promotion_dag_refuses_a_ticker_that_is_not_a_symbol(bag: Any) -> None:
    from airflow.sdk.definitions.param import ParamValidationError

    ticker = bag.get_dag("model_promotion").params.get_param("ticker")
    assert ticker.resolve("BRK-B") == "BRK-B"
    for bad in ("../x", "/abs/GOOG", "GOOG'", ""):
        with pytest.raises(ParamValidationError):
            ticker.resolve(bad)
