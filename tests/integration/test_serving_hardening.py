"""The hostile-user findings, against a real `python -m pipeline serve` (2 workers).

One test per finding: deep JSON, Infinity/NaN, dates past 2262, a huge string in a
cell, CSV bodies, bodies over the limit, a burst beyond max_in_flight, SIGTERM
during a burst (last: it stops the module's server). Plus generated bodies: never
a 5xx, never a long message.
"""

from __future__ import annotations

import collections
import http.client
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.config import throwaway_config
from pipeline.data import store

from .conftest import TINY, store_env
from .serving_support import free_port, group_gone, serving_store, start_server, stop_server

pytestmark = pytest.mark.slow
LIMIT = 1_048_576  # serving.max_body_bytes (default)


@pytest.fixture(scope="module")
def hardened(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = serving_store(tmp_path_factory, versions=1)
    cfg = throwaway_config(root, TINY)
    port = free_port()
    env = {
        **store_env(root),
        "PIPELINE__SERVING__WORKERS": "2",
        "PIPELINE__SERVING__MAX_IN_FLIGHT": "2",
        "PIPELINE__SERVING__SHUTDOWN_GRACE_S": "2",
    }
    proc = start_server(env, port, root / "hardened.log")
    bars = store.read_curated(cfg, "GOOG")
    rows = bars.tail(60).assign(Date=lambda b: b["Date"].dt.strftime("%Y-%m-%d"))
    many = pd.concat([bars] * 3, ignore_index=True).tail(4000)  # ~230 KB, max_rows 5000
    many = many.assign(Date=pd.bdate_range("1990-01-01", periods=len(many)).strftime("%Y-%m-%d"))
    yield {
        "proc": proc,
        "port": port,
        "url": f"http://127.0.0.1:{port}/invocations",
        "rows": rows,
        "many": _split(many),
    }
    stop_server(proc)


def _split(rows: pd.DataFrame) -> str:
    return json.dumps({"dataframe_split": json.loads(rows.to_json(orient="split", index=False))})


def _post(url: str, body: Any, content_type: str = "application/json") -> requests.Response:
    return requests.post(url, data=body, headers={"Content-Type": content_type}, timeout=60)


def _with(rows: pd.DataFrame, row: int, column: str, value: Any) -> str:
    doc = json.loads(_split(rows))
    doc["dataframe_split"]["data"][row][doc["dataframe_split"]["columns"].index(column)] = value
    return json.dumps(doc)


def _refused(resp: requests.Response, status: int = 400) -> str:
    assert resp.status_code == status, resp.text[:500]
    doc = resp.json()
    assert set(doc) == {"error_code", "message"}, doc  # no stack_trace
    assert len(doc["message"]) < 500 and "Traceback" not in doc["message"]
    return str(doc["message"])


def test_deeply_nested_json_is_a_400(hardened: dict[str, Any]) -> None:
    deep = "[" * 5000 + "]" * 5000
    assert _refused(_post(hardened["url"], deep)).startswith("JSON nested too deeply")
    inner = '{"dataframe_split": {"columns": ' + "[" * 3000 + "]" * 3000 + "}}"
    assert _refused(_post(hardened["url"], inner)).startswith("JSON nested too deeply")


def test_infinity_and_nan_are_400s_naming_the_column(hardened: dict[str, Any]) -> None:
    url, rows = hardened["url"], hardened["rows"]
    message = _refused(_post(url, _with(rows, -1, "Close", float("inf"))))  # `Infinity`
    assert message == "Close must be a finite number; infinite on ['2013-03-01']"
    message = _refused(_post(url, _with(rows, 0, "Open", float("-inf"))))
    assert message == "Open must be a finite number; infinite on ['2012-12-04']"
    message = _refused(_post(url, _with(rows, -1, "High", float("nan"))))  # `NaN`
    assert message == "High must be a number on every row; missing or text on ['2013-03-01']"


@pytest.mark.parametrize("day", ["2262-05-01", "9999-12-31"])
def test_out_of_range_dates_are_400s_naming_the_value(hardened: dict[str, Any], day: str) -> None:
    message = _refused(_post(hardened["url"], _with(hardened["rows"], -1, "Date", day)))
    assert message == f"Date must be between 1900-01-01 and 2200-12-31; out of range: ['{day}']"


def test_a_huge_string_in_a_cell_is_not_echoed(hardened: dict[str, Any]) -> None:
    url, rows = hardened["url"], hardened["rows"]
    resp = _post(url, _with(rows, -1, "Date", "9" * 10_000_000))  # over the body limit
    assert "over the 1048576-byte limit" in _refused(resp, 413)
    message = _refused(_post(url, _with(rows, -1, "Date", "9" * 500_000)))
    assert message == f"Date must be YYYY-MM-DD; unreadable: ['{'9' * 40}... (500000 chars)']"


def test_csv_is_served_like_json(hardened: dict[str, Any]) -> None:
    url, rows = hardened["url"], hardened["rows"]
    as_json = _post(url, _split(rows))
    as_csv = _post(url, rows.to_csv(index=False), "text/csv")
    assert as_json.status_code == as_csv.status_code == 200, as_csv.text
    assert as_csv.json() == as_json.json()
    bad = rows.astype({"Volume": object}).assign(Volume=[*rows["Volume"][:-1], "lots"])
    message = _refused(_post(url, bad.to_csv(index=False), "text/csv"))
    assert message == "Volume must be a number on every row; missing or text on ['2013-03-01']"


def test_a_body_over_the_limit_is_413_by_length_and_while_streaming(
    hardened: dict[str, Any],
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", hardened["port"], timeout=10)
    conn.putrequest("POST", "/invocations")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(50 * LIMIT))
    conn.endheaders()  # and no body at all: the answer comes from the header alone
    resp = conn.getresponse()
    assert resp.status == 413
    assert json.loads(resp.read())["message"].startswith(f"request body of {50 * LIMIT} bytes")
    conn.close()
    chunks = (b" " * 65536 for _ in range(40))  # chunked: no Content-Length
    message = _refused(_post(hardened["url"], chunks), 413)
    assert message.startswith(f"request body is over the {LIMIT}-byte limit")
    assert _post(hardened["url"], _split(hardened["rows"])).status_code == 200


def _burst(url: str, body: str, n: int) -> list[tuple[int, float, requests.Response]]:
    """`n` requests at once; (status, seconds, response) each."""
    start, out, lock = threading.Barrier(n), [], threading.Lock()

    def one() -> None:
        start.wait()
        t0 = time.monotonic()
        resp = _post(url, body)
        with lock:
            out.append((resp.status_code, time.monotonic() - t0, resp))

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def _group_rss_mb(pgid: int) -> float:
    total = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()
                if int(stat[2]) == pgid:
                    total += int(stat[21]) * os.sysconf("SC_PAGE_SIZE")
            except (OSError, IndexError):
                continue
    return total / 2**20


def test_a_burst_gets_quick_503s_and_the_server_recovers(hardened: dict[str, Any]) -> None:
    url = hardened["url"]
    answers = _burst(url, hardened["many"], 40)
    statuses = collections.Counter(status for status, _, _ in answers)
    assert set(statuses) <= {200, 503} and statuses[503] > 0 and statuses[200] > 0, statuses
    busy = [(seconds, resp) for status, seconds, resp in answers if status == 503]
    assert sorted(s for s, _ in busy)[len(busy) // 2] < 2.0  # refused at once, not queued
    assert all(resp.headers["Retry-After"] == "1" for _, resp in busy)
    assert _refused(busy[0][1], 503).startswith("busy: 2 requests already in progress")
    assert _post(url, _split(hardened["rows"])).status_code == 200  # right after

    before = _group_rss_mb(hardened["proc"].pid)  # bodies far over the limit: no memory
    huge = "x" * (2 * LIMIT)
    statuses = collections.Counter(s for s, _, _ in _burst(url, huge, 40))
    assert statuses == {413: 40}
    assert _group_rss_mb(hardened["proc"].pid) - before < 150
    assert _post(url, _split(hardened["rows"])).status_code == 200


ODD = (
    st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.text(max_size=50)
    | st.none()
    | st.sampled_from(["2262-05-01", "9999-12-31", "1e999", "2013-03-01T00:00:00+05:00"])
)
BODIES = (
    st.tuples(st.binary(max_size=3000), st.sampled_from(["application/json", "text/csv"]))
    | st.tuples(
        st.recursive(
            st.none() | st.floats() | st.text(max_size=20),
            lambda kids: (
                st.lists(kids, max_size=5)
                | st.dictionaries(st.sampled_from(["dataframe_split", "data", "columns"]), kids)
            ),
            max_leaves=30,
        ).map(lambda doc: json.dumps({"dataframe_split": doc}).encode()),
        st.just("application/json"),
    )
    | st.tuples(
        st.lists(
            st.tuples(
                st.integers(0, 59),
                st.sampled_from(["Date", "Open", "High", "Low", "Close", "Volume"]),
                ODD,
            ),
            min_size=1,
            max_size=3,
        ),
        st.sampled_from(["application/json", "text/csv"]),
    )
)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=BODIES)
def test_generated_bodies_get_an_answer_or_a_short_4xx(
    hardened: dict[str, Any], body: tuple[Any, str]
) -> None:
    payload, content_type = body
    if isinstance(payload, list):  # edits to the sound 60 rows
        rows = hardened["rows"].astype(object)
        for row, column, value in payload:
            rows.iloc[row, rows.columns.get_loc(column)] = value
        payload = rows.to_csv(index=False) if content_type == "text/csv" else _split(rows)
    resp = _post(hardened["url"], payload, content_type)
    assert resp.status_code == 200 or 400 <= resp.status_code < 500, resp.text[:500]
    if resp.status_code != 200:
        _refused(resp, resp.status_code)


def test_sigterm_during_a_burst_stops_every_process_within_seconds(
    hardened: dict[str, Any],
) -> None:
    """Last in the module: it stops the module's server."""
    proc, url, body = hardened["proc"], hardened["url"], hardened["many"]
    stop, seen = threading.Event(), collections.Counter()

    def fire() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    resp = session.post(
                        url, data=body, headers={"Content-Type": "application/json"}, timeout=30
                    )
                    seen[resp.status_code] += 1
                except requests.RequestException:
                    seen["refused"] += 1

    threads = [threading.Thread(target=fire) for _ in range(12)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 20
        while seen[200] < 4 and time.monotonic() < deadline:  # work in flight on both
            time.sleep(0.1)
        t0 = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)  # the main process only, as a supervisor would
        proc.wait(timeout=10)
        while not group_gone(proc.pid) and time.monotonic() - t0 < 10:
            time.sleep(0.05)
        took = time.monotonic() - t0
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert group_gone(proc.pid), "processes left after SIGTERM"
    assert took < 5, took
    assert set(seen) <= {200, 503, "refused"}, seen
