"""Serving latency over real HTTP: the project's pyfunc vs a plain `model.predict` pyfunc.

    .venv/bin/python -m bench.serving [--requests 300] [--seconds 30]

Trains one network (default parameters, a few epochs), logs it twice -- as the
project's PriceForecaster (compiled tf.function, warmed at load) and as
PredictPerRequest (keras model.predict per call) -- starts the scoring server
(`python -m pipeline.server`, max_in_flight raised to the top concurrency) for
each, and measures p50/p99 latency and requests/s at concurrency 1 and 8,
alternating between the two in the same run. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import requests

from bench.common import sample_features
from pipeline import store, tracking
from pipeline.config import throwaway_config
from pipeline.model import LSTMParams
from pipeline.serving import serve_command
from pipeline.train import fit_final, log_forecaster


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log_both(tmp: str) -> tuple[str, str, Any]:
    from bench.plain_model import PredictPerRequest

    cfg = throwaway_config(Path(tmp), serving__max_in_flight=8)  # concurrency 8: no 503s
    bars, feats = sample_features()
    store.publish_curated(cfg, "GOOG", bars, bars.iloc[:0], bars["Date"].iloc[-1].date())
    model, prep = fit_final(LSTMParams(), feats, epochs=3, seed=0)
    uris = []
    for kind in ("project", "plain"):
        mc = tracking.client(cfg)
        run = mc.create_run(tracking.experiment_id(cfg), run_name=f"serving-bench-{kind}")
        uris.append(
            log_forecaster(
                cfg,
                model,
                prep,
                bars,
                run.info.run_id,
                PredictPerRequest() if kind == "plain" else None,
            )
        )
    return uris[0], uris[1], (cfg, bars)


def start(uri: str, cfg: Any, port: int, log: Path) -> subprocess.Popen[bytes]:
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


def load(url: str, body: str, concurrency: int, total: int, seconds: float) -> dict[str, Any]:
    """`total` requests (or until `seconds` pass) from `concurrency` threads."""
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
            t0 = time.perf_counter()
            ok = (
                session.post(
                    url, data=body, headers={"Content-Type": "application/json"}, timeout=30
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
    elapsed = time.perf_counter() - start_t
    ms = np.array(latencies) * 1000
    return {
        "requests": len(ms),
        "failed": failures[0],
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "requests_per_s": round(len(ms) / elapsed, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project_uri, plain_uri, (cfg, bars) = log_both(tmp)
        tail = bars.tail(60)
        rows = tail.assign(Date=tail["Date"].dt.strftime("%Y-%m-%d"))
        body = json.dumps(
            {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}
        )
        servers, urls = [], {}
        try:
            for name, uri in (("project_pyfunc", project_uri), ("plain_predict", plain_uri)):
                port = free_port()
                servers.append(start(uri, cfg, port, Path(tmp) / f"{name}.log"))
                urls[name] = f"http://127.0.0.1:{port}/invocations"
            answers = {
                n: requests.post(
                    u, data=body, headers={"Content-Type": "application/json"}, timeout=60
                ).json()["predictions"][0]
                for n, u in urls.items()
            }
            out: dict[str, Any] = {
                "payload_rows": len(rows),
                "results": {n: {} for n in urls},
                "same_forecast": abs(
                    answers["project_pyfunc"]["forecast_close"]
                    - answers["plain_predict"]["forecast_close"]
                )
                < 1e-3,
            }
            for concurrency in (1, 8):
                for name, url in urls.items():  # alternate: same machine state for both
                    load(url, body, concurrency, 20, 10)  # warm-up
                    out["results"][name][f"concurrency_{concurrency}"] = load(
                        url, body, concurrency, args.requests, args.seconds
                    )
        finally:
            for proc in servers:
                os.killpg(proc.pid, 15)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
