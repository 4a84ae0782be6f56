"""Where a served request's time goes beyond the model's own: cold caches, in one process.

    .venv/bin/python -m bench.serving_cache [--rows 250] [--calls 300]

bench.serving measured the project's pyfunc, every window run (before the server kept
them: pipeline/forecasting/memo.py), at about 2.5 ms over the floor behind the scoring
server, while its `predict` alone cost about half of that in one process. This times,
side by side in one process and one run, the steps of a request as the server's
worker thread makes them (MLflow's parse of the JSON body, then the pyfunc's predict
through the guard's wrapper): each alone (warm caches), one after the other (the parse
evicts part of what the predict uses), and the predict right after a 32 MB pass over
memory (caches cold, as between requests in a busy server). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from typing import Any

import mlflow
import numpy as np

from bench.serving import log_all, request_body


def p50_ms(call: Callable[[], Any], calls: int, before: Callable[[], Any] | None = None) -> float:
    """Median time of `call` (after `before`, untimed, each time), warmed first."""
    for _ in range(30):
        call()
    times = []
    for _ in range(calls):
        if before is not None:
            before()
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return round(float(np.median(times)) * 1e3, 3)


def request_steps(uri: str, body: str, calls: int, junk: np.ndarray) -> dict[str, float]:
    """The median times of one logged model's request steps (see the module docstring)."""
    from mlflow.pyfunc.scoring_server import infer_and_parse_data

    from pipeline.serving.answers import Reasons, answer_as_records

    model = mlflow.pyfunc.load_model(uri)
    answer_as_records(model)
    served, schema = Reasons(model), model.metadata.get_input_schema()
    data = infer_and_parse_data(json.loads(body), schema)

    def parse() -> Any:
        return infer_and_parse_data(json.loads(body), schema)

    def predict() -> Any:
        return served.predict(data)

    return {
        "parse_ms": p50_ms(parse, calls),
        "predict_ms": p50_ms(predict, calls),
        "parse_then_predict_ms": p50_ms(lambda: (parse(), predict()), calls),
        "predict_caches_cold_ms": p50_ms(predict, calls, before=junk.sum),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=250)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        uris, _, bars = log_all(tmp, only={"project", "floor"})
        body = request_body(bars, args.rows)
        junk = np.random.default_rng(0).normal(size=4_000_000)  # 32 MB: more than the caches
        out: dict[str, Any] = {"payload_rows": min(args.rows, len(bars))}
        for name in ("project", "floor"):
            out[name] = request_steps(uris[name], body, args.calls, junk)
        print(json.dumps(out))


if __name__ == "__main__":
    main()
