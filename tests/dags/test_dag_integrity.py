import itertools
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline import steps

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
    dag = bag.get_dag("price_pipeline")
    assert dag is not None and bag.get_dag("model_promotion") is not None
    assert dag.default_args["retries"] >= 1 and dag.default_args["retry_exponential_backoff"]


def test_dag_runs_the_steps_in_the_runners_order(bag: Any) -> None:
    """The DAG and `python -m pipeline run` take their order from pipeline/steps.py."""
    dag = bag.get_dag("price_pipeline")
    assert step_order(dag) == list(steps.SEQUENCE)
    for a, b in itertools.pairwise(steps.SEQUENCE):  # each step waits for the one before
        assert a in dag.get_task(b).get_flat_relative_ids(upstream=True), (a, b)
    # the fanned-out step is mapped over ticker x worker; one carry per ticker goes on
    assert "tune_workers" in dag.get_task(steps.FAN_OUT).upstream_task_ids
    assert "per_ticker" in dag.get_task(steps.FAN_OUT).downstream_task_ids


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
