"""Serving latency over real HTTP: the project's pyfunc vs the floor vs `model.predict`.

    .venv/bin/python -m bench.serving [--requests 300] [--seconds 30] [--rows 250]

Trains one network (default parameters, a few epochs) and logs six pyfuncs: the
project's PriceForecaster (served through LiteRT, a request's windows in one call, the
windows it has run kept: pipeline/forecasting/memo.py), Unkept (the same keeping none:
every request runs all its windows, as a client's first request), PerWindow (through
LiteRT one call a window, as before the batching), CompiledTF (on the compiled
tf.function, as versions without the LiteRT conversion are served), PredictPerRequest
(keras model.predict per call), these three keeping no windows either, and the floor,
Constant (a pyfunc that answers a constant: what the server and MLflow's request
handling cost by themselves).
Each is served by the project's scoring server (`python -m pipeline.serving.server`,
max_in_flight raised to the top concurrency) and sent what a client asking once a
session sends: the newest `--rows` raw daily bars as of the next session each time,
never a body the server has seen (Sessions; the same bodies in the same order to every
server). Measured in one run, alternating between the servers: p50/p99 latency at
concurrency 1, requests/s at concurrency 8, then again requests/s at concurrency 8 with
2 worker processes each. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import requests

from bench.common import sample_features
from pipeline import tracking
from pipeline.config import throwaway_config
from pipeline.data import store
from pipeline.forecasting.model import LSTMParams
from pipeline.forecasting.train import fit_final, har_fit, log_forecaster
from pipeline.serving.production import serve_command

ROUNDS = 3
WARM_UP = 20  # requests to each server before a measurement


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log_all(tmp: str, only: set[str] | None = None) -> tuple[dict[str, str], Any, Any]:
    """The six pyfuncs (or those named in `only`), logged to a throw-away store: name ->
    model URI."""
    from bench.plain_model import CompiledTF, Constant, PerWindow, PredictPerRequest, Unkept

    cfg = throwaway_config(Path(tmp), serving__max_in_flight=8)  # concurrency 8: no 503s
    bars, feats = sample_features()
    store.publish_curated(cfg, "GOOG", bars, bars.iloc[:0], bars["Date"].iloc[-1].date())
    model, prep = fit_final(LSTMParams(), feats, epochs=3, seed=0)
    mc = tracking.client(cfg)
    uris = {}
    variants = (
        ("project", None),
        ("project_unkept", Unkept()),
        ("project_per_window", PerWindow()),
        ("project_compiled_tf", CompiledTF()),
        ("model_predict", PredictPerRequest()),
    )
    for name, pyfunc in variants:
        if only is not None and name not in only:
            continue
        run = mc.create_run(tracking.experiment_id(cfg), run_name=f"serving-bench-{name}")
        combine = har_fit(feats) if cfg.model.combine_har else None  # as train.run logs it
        uris[name] = log_forecaster(cfg, model, prep, bars, run.info.run_id, pyfunc, combine)
    if only is None or "floor" in only:
        with mlflow.start_run(experiment_id=tracking.experiment_id(cfg), run_name="floor"):
            floor = mlflow.pyfunc.log_model(name="model", python_model=Constant())
            uris["floor"] = floor.model_uri
    return uris, cfg, bars


def start(uri: str, cfg: Any, port: int, log: Path, workers: int = 1) -> subprocess.Popen[bytes]:
    cfg = cfg.model_copy(update={"serving": cfg.serving.model_copy(update={"workers": workers})})
    argv, env = serve_command(cfg, uri, port, follow=False)
    proc = subprocess.Popen(
        argv, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/ping", timeout=1).ok:
                return proc
        except requests.ConnectionError:
            time.sleep(0.5)
    raise RuntimeError(log.read_text()[-2000:])


def session_bodies(bars: Any, rows: int, count: int) -> list[str]:
    """What a client asking once a session sends, in order: the newest `rows` bars as of
    each of the last `count` sessions of `bars`."""
    first = len(bars) - count + 1
    if first < rows:
        raise ValueError(f"{len(bars)} bars give {len(bars) - rows + 1} sessions, not {count}")
    return [request_body(bars.iloc[:end], rows) for end in range(first, len(bars) + 1)]


class Sessions:
    """One server's stream of `bodies` (session_bodies), each request the next session's.
    A body is never sent twice: past the last one, a call fails rather than repeat one (a
    server that kept its windows would then look faster than any client finds it)."""

    def __init__(self, bodies: list[str]):
        self.bodies = bodies
        self._sent = itertools.count()
        self._lock = threading.Lock()

    def __call__(self) -> str:
        with self._lock:
            sent = next(self._sent)
        if sent >= len(self.bodies):
            raise RuntimeError(f"more than {len(self.bodies)} requests: a body would repeat")
        return self.bodies[sent]


def load(url: str, body: Sessions, concurrency: int, total: int, seconds: float) -> dict[str, Any]:
    """`total` requests (or until `seconds` pass) from `concurrency` threads."""
    latencies, failures, elapsed = _fire(url, body, concurrency, total, seconds)
    return summary(latencies, failures, elapsed)


def _fire(
    url: str, body: Sessions, concurrency: int, total: int, seconds: float
) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    failures = [0]
    lock, left = threading.Lock(), [total]
    deadline = time.monotonic() + seconds

    def worker() -> None:
        session = requests.Session()
        while time.monotonic() < deadline:
            with lock:
                if left[0] <= 0:
                    return
                left[0] -= 1
            data = body()
            t0 = time.perf_counter()
            ok = (
                session.post(
                    url, data=data, headers={"Content-Type": "application/json"}, timeout=30
                ).status_code
                == 200
            )
            dt = time.perf_counter() - t0
            with lock:
                latencies.append(dt)
                failures[0] += not ok

    start_t = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, failures[0], time.perf_counter() - start_t


def summary(latencies: list[float], failures: int, elapsed: float) -> dict[str, Any]:
    ms = np.array(latencies) * 1000
    return {
        "requests": len(ms),
        "failed": failures,
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "requests_per_s": round(len(ms) / elapsed, 1),
    }


def serve_all(
    uris: dict[str, str], cfg: Any, tmp: str, workers: int
) -> tuple[list[subprocess.Popen[bytes]], dict[str, str]]:
    servers, urls = [], {}
    for name, uri in uris.items():
        port = free_port()
        servers.append(start(uri, cfg, port, Path(tmp) / f"{name}-{workers}.log", workers))
        urls[name] = f"http://127.0.0.1:{port}/invocations"
    return servers, urls


def stop_all(servers: list[subprocess.Popen[bytes]]) -> None:
    for proc in servers:
        os.killpg(proc.pid, 15)
    for proc in servers:
        proc.wait(timeout=30)


def measure(
    urls: dict[str, str],
    bodies: dict[str, Sessions],
    concurrency: int,
    requests_: int,
    seconds: float,
) -> dict[str, Any]:
    """The servers in turn, in ROUNDS rounds of the same load after the same warm-up, so a
    passing disturbance of this noisy machine hits all of them alike; each server gets
    the next sessions' bodies of its own `bodies` sequence."""
    for name, url in urls.items():
        load(url, bodies[name], concurrency, WARM_UP, 10)
    got: dict[str, tuple[list[float], int, float]] = {n: ([], 0, 0.0) for n in urls}
    for _ in range(ROUNDS):
        for name, url in urls.items():
            lat, failed, spent = _fire(url, bodies[name], concurrency, requests_ // ROUNDS, seconds)
            before = got[name]
            got[name] = (before[0] + lat, before[1] + failed, before[2] + spent)
    return {name: summary(*result) for name, result in got.items()}


def request_body(bars: Any, rows: int) -> str:
    """The JSON body a client sends: the newest `rows` raw daily bars, split-oriented."""
    tail = bars.tail(rows)
    dated = tail.assign(Date=tail["Date"].dt.strftime("%Y-%m-%d"))
    return json.dumps({"dataframe_split": json.loads(dated.to_json(orient="split", index=False))})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rows", type=int, default=250)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        uris, cfg, bars = log_all(tmp)
        rows = min(args.rows, len(bars))
        count = 2 * (WARM_UP + args.requests)  # two measurements on the same servers
        bodies_in_order = session_bodies(bars, rows, count)
        # the check: the session before the first measured, as a client's the day before
        body = request_body(bars.iloc[: len(bars) - count], rows)
        out: dict[str, Any] = {
            "payload_rows": rows,
            "sessions": count,
            "remembered_mb": cfg.serving.remembered_mb,
            "cpu_cores": os.cpu_count(),
        }
        servers, urls = serve_all(uris, cfg, tmp, workers=1)
        bodies = {name: Sessions(bodies_in_order) for name in urls}
        try:
            answers = {
                n: requests.post(
                    u, data=body, headers={"Content-Type": "application/json"}, timeout=60
                ).json()["predictions"][0]
                for n, u in urls.items()
            }
            closes = [answers[n]["forecast_close"] for n in answers if n != "floor"]
            out["same_forecast"] = max(closes) - min(closes) < 1e-3
            out["answered_version"] = answers["project"]["model_version"]
            loaded = mlflow.pyfunc.load_model(uris["project"]).unwrap_python_model()
            out["project_runtime"] = loaded.runtime
            out["concurrency_1"] = measure(urls, bodies, 1, args.requests, args.seconds)
            out["concurrency_8_workers_1"] = measure(urls, bodies, 8, args.requests, args.seconds)
        finally:
            stop_all(servers)
        two = {k: v for k, v in uris.items() if k not in ("model_predict", "project_per_window")}
        servers, urls = serve_all(two, cfg, tmp, workers=2)
        bodies = {name: Sessions(bodies_in_order) for name in urls}
        try:
            out["concurrency_8_workers_2"] = measure(urls, bodies, 8, args.requests, args.seconds)
        finally:
            stop_all(servers)
    c1 = out["concurrency_1"]
    out["project_over_floor_p50"] = round(c1["project"]["p50_ms"] / c1["floor"]["p50_ms"], 2)
    out["project_over_floor_p99"] = round(c1["project"]["p99_ms"] / c1["floor"]["p99_ms"], 2)
    out["project_unkept_over_floor_p50"] = round(
        c1["project_unkept"]["p50_ms"] / c1["floor"]["p50_ms"], 2
    )
    out["project_per_window_over_floor_p50"] = round(
        c1["project_per_window"]["p50_ms"] / c1["floor"]["p50_ms"], 2
    )
    out["project_compiled_tf_over_floor_p50"] = round(
        c1["project_compiled_tf"]["p50_ms"] / c1["floor"]["p50_ms"], 2
    )
    out["project_workers_2_over_1_rps"] = round(
        out["concurrency_8_workers_2"]["project"]["requests_per_s"]
        / out["concurrency_8_workers_1"]["project"]["requests_per_s"],
        2,
    )
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
