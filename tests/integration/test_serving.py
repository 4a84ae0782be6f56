"""A real `python -m pipeline serve` process on tiny registered models."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import mlflow
import pandas as pd
import pytest
import requests

from pipeline.config import throwaway_config
from pipeline.data import store
from pipeline.data.ingest import sample_path
from pipeline.layout import version_uri
from pipeline.lifecycle import promotion, registry

from .conftest import TINY, store_env
from .serving_support import free_port, serving_store, start_server, stop_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = serving_store(tmp_path_factory, versions=2)  # v1 in production
    cfg = throwaway_config(root, TINY, registry__naive_margin=0.5)  # we promote by hand
    if str(registry.production_version(cfg, "GOOG").version) != "1":  # another module moved it
        promotion.promote(cfg, "GOOG", "1", "serve v1", "test", force=True)
    port = free_port()
    env = {
        **store_env(root),
        "PIPELINE__SERVING__RELOAD_INTERVAL_S": "0.5",
        "PIPELINE__SERVING__WORKERS": "2",  # each worker follows the alias on its own
    }
    log = root / "server.log"
    proc = start_server(env, port, log)
    bars = store.read_curated(cfg, "GOOG").tail(60)
    rows = bars.assign(Date=bars["Date"].dt.strftime("%Y-%m-%d"))
    yield {"cfg": cfg, "url": f"http://127.0.0.1:{port}/invocations", "rows": rows, "log": log}
    stop_server(proc)


def _post(url: str, body: Any, raw: bool = False) -> requests.Response:
    data = body if raw else json.dumps(body)
    return requests.post(url, data=data, headers={"Content-Type": "application/json"}, timeout=60)


def _split(rows: pd.DataFrame) -> dict[str, Any]:
    return {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}


def _local(version: str, rows: pd.DataFrame, column: str = "upper_95") -> float:
    """What the version answers in process (by default the top of its 95 % interval, which
    tells versions apart: every version's location is the same drift)."""
    model = mlflow.pyfunc.load_model(version_uri("price_lstm_GOOG", version))
    return float(model.predict(rows)[column].iloc[0])


def test_good_request_matches_the_pyfunc(served: dict[str, Any]) -> None:
    resp = _post(served["url"], _split(served["rows"]))
    assert resp.status_code == 200, resp.text
    pred = resp.json()["predictions"][0]
    assert pred["as_of"] == "2013-03-01" and pred["for_date"] == "2013-03-04"
    assert pred["model_version"] == "1"
    assert pred["forecast_close"] == pytest.approx(
        _local("1", served["rows"], "forecast_close"), rel=1e-6
    )
    # the distribution: central intervals around the forecast, and the log-return scale
    assert pred["lower_95"] < pred["lower_80"] < pred["forecast_close"] < pred["upper_80"]
    assert pred["upper_80"] < pred["upper_95"] and pred["scale"] > 0
    local = mlflow.pyfunc.load_model(version_uri("price_lstm_GOOG", "1")).predict(served["rows"])
    assert pred["upper_95"] == pytest.approx(float(local["upper_95"].iloc[0]), rel=1e-6)
    records = {"dataframe_records": served["rows"].to_dict(orient="records")}
    assert _post(served["url"], records).status_code == 200


def test_a_client_asking_every_session_gets_the_versions_own_answers(
    served: dict[str, Any],
) -> None:
    """The server keeps the windows it has run (pipeline/forecasting/memo.py): each
    session's request re-sends all but one of them, and is answered to the last digit as
    the version answers in process, where nothing is kept."""
    bars = store.read_curated(served["cfg"], "GOOG").tail(66)
    rows = bars.assign(Date=bars["Date"].dt.strftime("%Y-%m-%d"))
    model = mlflow.pyfunc.load_model(version_uri("price_lstm_GOOG", "1"))
    for end in range(60, 67):  # seven sessions in turn, each request the bars as of one
        request = rows.iloc[end - 60 : end]
        got = _post(served["url"], _split(request)).json()["predictions"][0]
        want = model.predict(request).iloc[0]
        for column in ("forecast_close", "lower_80", "upper_80", "lower_95", "upper_95"):
            assert got[column] == float(want[column]), (end, column)


def test_a_ticker_the_model_never_saw_is_answered_from_its_own_bars(
    served: dict[str, Any],
) -> None:
    """Scale-free inputs: a model trained on GOOG answers for MSFT, as the pyfunc does in
    process, with the vendor's Adj Close in the request too."""
    raw = pd.read_csv(sample_path("MSFT")).tail(60)
    resp = _post(served["url"], _split(raw))
    assert resp.status_code == 200, resp.text
    pred = resp.json()["predictions"][0]
    assert pred["last_close"] == pytest.approx(27.95) and pred["as_of"] == "2013-03-01"
    local = mlflow.pyfunc.load_model(version_uri("price_lstm_GOOG", "1")).predict(raw)
    assert pred["upper_80"] == pytest.approx(float(local["upper_80"].iloc[0]), rel=1e-6)


def _mangle(name: str, rows: pd.DataFrame) -> Any:
    if name == "missing column":
        return _split(rows.drop(columns="Volume"))
    if name == "too few rows":
        return _split(rows.tail(5))
    if name == "NaN":
        return _split(rows.assign(Close=[*rows["Close"][:-1], float("nan")]))
    if name == "text in a number":
        return _split(rows.astype({"Open": object}).assign(Open=["abc"] * len(rows)))
    if name == "unsorted dates":
        return _split(rows.iloc[::-1])
    if name == "duplicate dates":
        return _split(pd.concat([rows, rows.tail(1)]))
    if name == "empty body":
        return ""
    if name == "not JSON":
        return "{dataframe_split: oops"
    if name == "huge body":
        big = pd.concat([rows] * 100, ignore_index=True)  # 6000 rows > serving.max_rows
        return _split(
            big.assign(Date=pd.bdate_range("1990-01-01", periods=len(big)).strftime("%Y-%m-%d"))
        )
    raise AssertionError(name)


BAD = {
    "missing column": "Volume",
    "too few rows": "needs at least",
    "NaN": "Close must be",
    "text in a number": "Open",
    "unsorted dates": "increasing order",
    "duplicate dates": "duplicate dates",
    "empty body": "",
    "not JSON": "",
    "huge body": "at most 5000",
}


@pytest.mark.parametrize("fault", list(BAD))
def test_bad_request_gets_4xx_and_server_keeps_serving(served: dict[str, Any], fault: str) -> None:
    body = _mangle(fault, served["rows"])
    resp = _post(served["url"], body, raw=isinstance(body, str))
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text[:500])
    assert BAD[fault] in resp.text
    assert set(resp.json()) == {"error_code", "message"}  # no stack_trace
    assert len(resp.json()["message"]) < 500 and "Failed to predict data" not in resp.text
    assert _post(served["url"], _split(served["rows"])).status_code == 200


def _swaps_to(log: Any, version: str) -> int:
    return log.read_text(errors="replace").count(f"now serving price_lstm_GOOG v{version}")


def test_served_model_follows_the_production_alias(served: dict[str, Any]) -> None:
    url, rows = served["url"], served["rows"]
    promotion.promote(served["cfg"], "GOOG", "2", "serve v2", "test", force=True)
    statuses, seen = [], "1"
    deadline = time.monotonic() + 60
    # keep traffic flowing during the swap, until both workers have moved
    while (seen != "2" or _swaps_to(served["log"], "2") < 2) and time.monotonic() < deadline:
        resp = _post(url, _split(rows))
        statuses.append(resp.status_code)
        seen = resp.json()["predictions"][0]["model_version"]
    assert seen == "2" and set(statuses) == {200}
    assert _swaps_to(served["log"], "2") == 2  # one swap per worker process
    answers = {
        _post(url, _split(rows)).json()["predictions"][0]["model_version"] for _ in range(20)
    }
    assert answers == {"2"}
    pred = _post(url, _split(rows)).json()["predictions"][0]
    assert pred["upper_95"] == pytest.approx(_local("2", rows), rel=1e-6)
    # the two versions differ in their learned scale (both forecast the drift)
    assert _local("1", rows) != pytest.approx(_local("2", rows), rel=1e-9)
    promotion.rollback(served["cfg"], "GOOG", "back", "test", force=True)
    assert str(registry.production_version(served["cfg"], "GOOG").version) == "1"
    deadline = time.monotonic() + 60
    while seen != "1" and time.monotonic() < deadline:
        seen = _post(url, _split(rows)).json()["predictions"][0]["model_version"]
    assert seen == "1"


def test_in_process_answers_name_their_registered_version(served: dict[str, Any]) -> None:
    """Loaded by alias or by version, outside the server, the answer names the version."""
    from pipeline import tracking

    tracking.client(served["cfg"])  # the store's URIs, as a user would set them
    prod = str(registry.production_version(served["cfg"], "GOOG").version)
    by_alias = mlflow.pyfunc.load_model("models:/price_lstm_GOOG@production")
    assert by_alias.predict(served["rows"])["model_version"].iloc[0] == prod
    other = "2" if prod == "1" else "1"
    by_version = mlflow.pyfunc.load_model(version_uri("price_lstm_GOOG", other))
    assert by_version.predict(served["rows"])["model_version"].iloc[0] == other
