import itertools
import subprocess
import sys
from pathlib import Path

DAGS = Path(__file__).parents[2] / "dags"


def test_dags_load_without_errors(airflow_db: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    dag = bag.get_dag("price_pipeline")
    assert dag is not None
    steps = [
        "ingest",
        "validate",
        "monitor",
        "features",
        "tune",
        "best",
        "train",
        "evaluate",
        "register",
        "promote",
        "forecast",
    ]
    assert set(steps) <= set(dag.task_ids)
    chain = [dag.get_task(t) for t in steps]
    assert all(
        b.task_id in a.downstream_task_ids or b.task_id == "best"
        for a, b in itertools.pairwise(chain)
    )
    assert bag.get_dag("model_promotion") is not None
    assert dag.default_args["retries"] >= 1 and dag.default_args["retry_exponential_backoff"]


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
