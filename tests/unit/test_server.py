"""The scoring server's guard, in process: a real (tiny) MLflow pyfunc behind serving/guard.py.

The model here runs the forecaster's own request check (check_bars) and answers one
row, so the guard, MLflow's request parsing and the model's refusals all take part;
no network, no TensorFlow.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlflow.pyfunc import PythonModel

from pipeline.forecasting.request import check_bars
from pipeline.sections import ServingConfig
from pipeline.serving import server
from pipeline.serving.answers import answer_records
from pipeline.serving.bodies import PARQUET
from pipeline.serving.guard import Guard

SLEEP_ENV = "PIPELINE_TEST_PREDICT_SLEEP_S"


class CheckedEcho(PythonModel):
    """check_bars (at least 5 rows, at most 50), then the last close; sleeps on request."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        time.sleep(float(os.environ.get(SLEEP_ENV, "0")))
        bars = check_bars(model_input, needed=5, max_rows=50)
        return pd.DataFrame({"last_close": [float(bars["Close"].iloc[-1])]})


@pytest.fixture(scope="module")
def pyfunc(tmp_path_factory: pytest.TempPathFactory) -> Any:
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, Schema

    numbers = [ColSpec(AnyType(), c) for c in ("Open", "High", "Low", "Close", "Volume")]
    signature = ModelSignature(
        inputs=Schema([ColSpec("string", "Date"), *numbers]),
        outputs=Schema([ColSpec("double", "last_close")]),
    )
    path = tmp_path_factory.mktemp("pyfunc") / "model"
    mlflow.pyfunc.save_model(
        path, python_model=CheckedEcho(), signature=signature, pip_requirements=[]
    )
    return mlflow.pyfunc.load_model(str(path))


@pytest.fixture(scope="module")
def make_app(pyfunc: Any) -> Callable[..., Guard]:
    def make(**limits: Any) -> Guard:
        keys = {"max_body_bytes": 64 * 1024, "max_in_flight": 2, "request_timeout_s": 5.0}
        return server.build_app(pyfunc, ServingConfig(**{**keys, **limits}))

    return make


@pytest.fixture(scope="module")
def app(make_app: Callable[..., Guard]) -> Guard:
    return make_app()


def _rows(n: int = 8) -> pd.DataFrame:
    close = 100 + np.arange(n, dtype=float)
    return pd.DataFrame(
        {
            "Date": pd.bdate_range("2024-01-01", periods=n).strftime("%Y-%m-%d"),
            "Open": close - 0.5,
            "High": close + 1,
            "Low": close - 1,
            "Close": close,
            "Volume": 1000.0,
        }
    )


def _split(rows: pd.DataFrame) -> bytes:
    return json.dumps(
        {"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}
    ).encode()


class Answer:
    def __init__(self, messages: list[dict[str, Any]]):
        start = next(m for m in messages if m["type"] == "http.response.start")
        self.status: int = start["status"]
        self.headers = {k.decode(): v.decode() for k, v in start["headers"]}
        self.body = b"".join(m.get("body", b"") for m in messages if m["type"] != start["type"])

    def json(self) -> Any:
        return json.loads(self.body)


async def _acall(
    app: Guard,
    body: bytes | list[bytes] = b"",
    content_type: str | None = "application/json",
    path: str = "/invocations",
    method: str = "POST",
    length: int | None = None,
    hold: threading.Event | None = None,
    receive_called: list[int] | None = None,
) -> Answer:
    chunks = body if isinstance(body, list) else [body]
    headers = []
    if content_type is not None:
        headers.append((b"content-type", content_type.encode()))
    if length is not None or not isinstance(body, list):
        size = length if length is not None else len(chunks[0])
        headers.append((b"content-length", str(size).encode()))
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": headers,
        "query_string": b"",
        "scheme": "http",
        "server": ("127.0.0.1", 5001),
        "client": ("127.0.0.1", 9),
        "http_version": "1.1",
        "root_path": "",
    }
    queue = list(chunks)

    async def receive() -> dict[str, Any]:
        if receive_called is not None:
            receive_called.append(1)
        if hold is not None:
            while not hold.is_set():
                await asyncio.sleep(0.01)
        if not queue:
            await asyncio.sleep(3600)
        chunk = queue.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(queue)}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return Answer(sent)


def call(app: Guard, body: bytes | list[bytes] = b"", **kw: Any) -> Answer:
    return asyncio.run(_acall(app, body, **kw))


def _refusal(answer: Answer, status: int, words: str = "") -> str:
    assert answer.status == status, answer.body[:300]
    doc = answer.json()
    assert set(doc) == {"error_code", "message"}
    assert len(doc["message"]) < 500 and "Traceback" not in doc["message"]
    assert words in doc["message"], doc["message"]
    return str(doc["message"])


def test_json_csv_and_records_give_the_same_answer(app: Guard) -> None:
    rows = _rows()
    answers = [
        call(app, _split(rows)),
        call(app, json.dumps({"dataframe_records": rows.to_dict("records")}).encode()),
        call(app, rows.to_csv(index=False).encode(), content_type="text/csv"),
        call(app, rows.to_csv(index=False).encode(), content_type="text/csv; charset=UTF-8"),
        call(app, json.dumps({"inputs": rows.to_dict("list")}).encode()),
    ]
    for answer in answers:
        assert answer.status == 200, answer.body
        assert answer.json() == {"predictions": [{"last_close": 107.0}]}


def test_mlflow_endpoints_pass_through_and_others_are_refused(app: Guard) -> None:
    assert call(app, path="/ping", method="GET", content_type=None).status == 200
    assert call(app, path="/health", method="GET", content_type=None).status == 200
    version = call(app, path="/version", method="GET", content_type=None)
    assert version.status == 200 and version.body.decode().count(".") == 2
    _refusal(call(app, path="/docs", method="GET"), 404, "no such endpoint /docs")
    answer = call(app, path="/invocations", method="GET")
    _refusal(answer, 405, "GET /invocations: use POST")
    assert answer.headers["allow"] == "POST"
    _refusal(call(app, path="/ping", method="POST"), 405, "use GET or HEAD")


def test_csv_refusals_are_the_models_own_or_say_what_is_wrong(app: Guard) -> None:
    rows = _rows()
    csv = rows.to_csv(index=False)
    text = rows.astype({"Close": object}).assign(Close=[*rows["Close"][:-1], "abc"])
    answer = call(app, text.to_csv(index=False).encode(), content_type="text/csv")
    _refusal(answer, 400, "Close must be a number on every row; missing or text on")
    answer = call(app, csv.replace("Volume", "Vol").encode(), content_type="text/csv")
    _refusal(answer, 400, "missing inputs ['Volume']")
    answer = call(app, (csv + "1,2\n").encode(), content_type="text/csv")
    _refusal(answer, 400, "CSV line 10 has 2 field(s); the header has 6")
    _refusal(call(app, b"\n\n", content_type="text/csv"), 400, "empty CSV")
    _refusal(call(app, b"\xff\xfe", content_type="text/csv"), 400, "valid UTF-8")
    bad_quote = b'Date,Open\n"2024-01-02"x,1\n'
    _refusal(call(app, bad_quote, content_type="text/csv"), 400, "CSV line 2: ',' expected")


def test_bad_json_is_a_short_400(app: Guard) -> None:
    _refusal(call(app, b"[" * 5000 + b"]" * 5000), 400, "JSON nested too deeply")
    deep = b'{"dataframe_split": ' + b"[" * 30 + b"]" * 30 + b"}"
    _refusal(call(app, deep), 400, "JSON nested too deeply")
    _refusal(call(app, b"{dataframe_split: oops"), 400, "valid JSON formatted string")
    _refusal(call(app, b""), 400, "valid JSON formatted string")
    _refusal(call(app, b"\xff" * 10), 400, "valid UTF-8")
    _refusal(call(app, b"1" * 5000), 400, "valid JSON formatted string")  # > 4300 digits
    _refusal(call(app, b"[1, 2]"), 400, "Received a list")
    _refusal(call(app, b'{"rows": 1}'), 400, "exactly one of the input fields")


def test_model_refusals_drop_the_frame_and_cut_long_values(app: Guard) -> None:
    rows = _rows()
    answer = call(app, _split(rows.assign(Date=[*rows["Date"][:-1], "x" * 20_000])))
    message = _refusal(answer, 400, "Date must be YYYY-MM-DD; unreadable: ['xxxx")
    assert "... (20000 chars)" in message and "Failed to predict" not in message
    inf = _split(rows).replace(b"107.0, 1000", b"Infinity, 1000")
    _refusal(call(app, inf), 400, "Close must be a finite number; infinite on ['2024-01-10']")
    nan = _split(rows).replace(b"107.0, 1000", b"NaN, 1000")
    _refusal(call(app, nan), 400, "Close must be a number on every row")
    late = _split(rows.assign(Date=[*rows["Date"][:-1], "9999-12-31"]))
    _refusal(call(app, late), 400, "out of range: ['9999-12-31']")
    message = _refusal(call(app, _split(rows.drop(columns="Volume"))), 400, "['Volume']")
    assert message.startswith("Failed to enforce schema: Model is missing inputs")
    _refusal(call(app, _split(rows.head(3))), 400, "3 row(s) sent; this model needs at least 5")


def test_content_types_mlflow_does_not_take_are_415(app: Guard) -> None:
    message = _refusal(call(app, b"{}", content_type="text/plain" + "x" * 5000), 415, "Got 'text")
    assert "(5010 chars)" in message
    _refusal(call(app, b"{}", content_type=None), 415, "Got ''")
    _refusal(call(app, b"{}", content_type="application/json; charset=latin-1"), 415, "UTF-8")
    _refusal(call(app, b"{}", content_type="application/json; x=1"), 415, "parameters: x")
    _refusal(call(app, b"PAR1", content_type=PARQUET), 400, "Parquet")


def test_parquet_is_served_unless_it_unpacks_to_too_much(app: Guard) -> None:
    def parquet(frame: pd.DataFrame) -> bytes:
        out = io.BytesIO()
        frame.to_parquet(out, index=False)
        return out.getvalue()

    answer = call(app, parquet(_rows()), content_type=PARQUET)
    assert answer.status == 200 and answer.json() == {"predictions": [{"last_close": 107.0}]}
    bomb = parquet(pd.DataFrame({"Date": ["2024-01-01"] * 2_000_000, "Close": 1.0}))
    assert len(bomb) < 64 * 1024  # under the body limit, two million rows inside
    message = _refusal(call(app, bomb, content_type=PARQUET), 400, "2000000 rows")
    assert message.startswith("Parquet body too large once unpacked")
    wide = parquet(pd.DataFrame({f"c{i}": [1.0] for i in range(100)}))
    _refusal(call(app, wide, content_type=PARQUET), 400, "100 columns")


def test_a_body_over_the_limit_is_refused_before_it_is_read(app: Guard) -> None:
    read: list[int] = []
    answer = call(app, b"{}", length=64 * 1024 + 1, receive_called=read)
    _refusal(answer, 413, "request body of 65537 bytes is over the 65536-byte limit")
    assert read == []  # refused on Content-Length alone
    streamed = [b" " * 10_000] * 7 + [_split(_rows())]  # chunked: no Content-Length
    _refusal(call(app, streamed), 413, "over the 65536-byte limit")
    assert call(app, [b" " * 10_000] * 5 + [_split(_rows())]).status == 200


def test_requests_beyond_max_in_flight_get_an_immediate_503(app: Guard) -> None:
    async def scenario() -> list[Answer]:
        hold = threading.Event()
        slow = [asyncio.create_task(_acall(app, _split(_rows()), hold=hold)) for _ in range(2)]
        await asyncio.sleep(0.1)  # both hold a slot while their bodies "arrive"
        t0 = time.monotonic()
        busy = await _acall(app, _split(_rows()))
        assert time.monotonic() - t0 < 0.5
        hold.set()
        return [busy, *await asyncio.gather(*slow), await _acall(app, _split(_rows()))]

    busy, *rest = asyncio.run(scenario())
    _refusal(busy, 503, "busy: 2 requests already in progress here")
    assert busy.headers["retry-after"] == "1"
    assert [a.status for a in rest] == [200, 200, 200]


def test_a_slow_answer_is_a_504_and_keeps_its_slot_until_done(
    make_app: Callable[..., Guard], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(max_in_flight=1, request_timeout_s=0.3)
    monkeypatch.setenv(SLEEP_ENV, "1.0")
    t0 = time.monotonic()
    _refusal(call(app, _split(_rows())), 504, "no answer within 0.3 s")
    assert time.monotonic() - t0 < 0.8
    monkeypatch.setenv(SLEEP_ENV, "0")
    _refusal(call(app, _split(_rows())), 503, "busy")  # the abandoned work still runs
    time.sleep(1.0)
    assert call(app, _split(_rows())).status == 200


def test_a_body_that_does_not_arrive_in_time_is_a_408(
    make_app: Callable[..., Guard],
) -> None:
    app = make_app(request_timeout_s=0.2)
    never = threading.Event()
    _refusal(call(app, _split(_rows()), hold=never), 408, "not received within 0.2 s")
    assert call(app, _split(_rows())).status == 200  # its slot was given back


def test_after_shutdown_new_work_is_refused(make_app: Callable[..., Guard]) -> None:
    app = make_app()

    async def lifespan() -> list[str]:
        inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
        sent: list[str] = []

        async def receive() -> dict[str, Any]:
            return inbox.pop(0)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message["type"])

        await app({"type": "lifespan"}, receive, send)
        return sent

    assert asyncio.run(lifespan()) == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    _refusal(call(app, _split(_rows())), 503, "shutting down")


# --- property-based: whatever arrives, a 200 or a short JSON 4xx ------------------------


def _never_a_5xx(answer: Answer) -> None:
    assert answer.status == 200 or 400 <= answer.status < 500, (answer.status, answer.body[:300])
    if answer.status != 200:
        doc = answer.json()
        assert set(doc) == {"error_code", "message"}
        assert len(doc["message"]) < 500 and "Traceback" not in doc["message"]


CONTENT_TYPES = st.sampled_from(["application/json", "text/csv", PARQUET, "text/plain"])
JSON_DOCS = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30),
    lambda kids: (
        st.lists(kids, max_size=6) | st.dictionaries(st.text(max_size=12), kids, max_size=6)
    ),
    max_leaves=40,
)
ODD_CELLS = (
    st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.text(max_size=40)
    | st.none()
    | st.sampled_from(["2020-01-02", "2262-05-01", "9999-12-31", "0001-01-01", "1e999", "-0"])
    | st.sampled_from(["1e308", "1e-308", "0", "2024-01-05T10:00:00+05:00", "2024-01-05Z"])
)
COLUMNS = ("Date", "Open", "High", "Low", "Close", "Volume")


@st.composite
def ohlcv_ish(draw: st.DrawFn) -> pd.DataFrame:
    """Mostly sound bars (so the checks past the first are reached), with a few odd cells."""
    n = draw(st.integers(min_value=0, max_value=12))
    close = draw(st.lists(st.floats(0.01, 1e6), min_size=n, max_size=n))
    frame = pd.DataFrame(
        {
            "Date": list(pd.bdate_range("2024-01-01", periods=n).strftime("%Y-%m-%d")),
            "Open": close,
            "High": [c * 1.01 for c in close],
            "Low": [c * 0.99 for c in close],
            "Close": close,
            "Volume": draw(st.lists(st.floats(0, 1e12), min_size=n, max_size=n)),
        },
        dtype=object,
    )
    if n:
        for _ in range(draw(st.integers(0, 3))):
            row, col = draw(st.integers(0, n - 1)), draw(st.sampled_from(COLUMNS))
            frame.loc[row, col] = draw(ODD_CELLS)
    return frame


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.binary(max_size=2000), content_type=CONTENT_TYPES)
def test_any_bytes_get_a_short_4xx_never_a_5xx(app: Guard, body: bytes, content_type: str) -> None:
    _never_a_5xx(call(app, body, content_type=content_type))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    doc=JSON_DOCS,
    key=st.sampled_from(["dataframe_split", "dataframe_records", "inputs", "instances", "x"]),
)
def test_any_json_document_gets_a_short_4xx_never_a_5xx(app: Guard, doc: Any, key: str) -> None:
    _never_a_5xx(call(app, json.dumps(doc).encode()))
    _never_a_5xx(call(app, json.dumps({key: doc}).encode()))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    frame=ohlcv_ish(), drop=st.sampled_from([None, None, "Date", "Close"]), how=st.integers(0, 2)
)
def test_any_ohlcv_ish_table_gets_an_answer_or_a_short_4xx(
    app: Guard, frame: pd.DataFrame, drop: str | None, how: int
) -> None:
    if drop:
        frame = frame.drop(columns=drop)
    if how == 0:
        split = {"columns": list(frame), "data": frame.to_numpy().tolist()}
        _never_a_5xx(call(app, json.dumps({"dataframe_split": split}).encode()))
    elif how == 1:
        records = frame.to_dict("records")
        _never_a_5xx(call(app, json.dumps({"dataframe_records": records}).encode()))
    else:
        csv = frame.to_csv(index=False).encode()
        _never_a_5xx(call(app, csv, content_type="text/csv"))


def test_settings_travel_as_json(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings_ = ServingConfig(max_in_flight=3, request_timeout_s=2.5, workers=2)
    monkeypatch.setenv(server.SETTINGS_ENV, settings_.model_dump_json())
    assert server.settings_from_env() == settings_


ANSWER_TABLES = {
    "floats and text": pd.DataFrame({"as_of": ["2024-01-02"], "close": [806.19], "n": [3]}),
    "nulls": pd.DataFrame({"lower": [None, 1.5], "upper": [np.nan, 2.5], "v": ["1", None]}),
    "pd.NA": pd.DataFrame({"nullable": pd.array([1, None], dtype="Int64")}),
    "numpy dtypes": pd.DataFrame(
        {
            "f32": np.array([0.1, 2.5], dtype="float32"),
            "i64": np.array([2**40, -1]),
            "flag": [True, False],
            "obj": [{"k": 1}, [1, 2]],
        }
    ),
    "extension dtypes": pd.DataFrame(
        {
            "nullable": pd.array([1, 2], dtype="Int64"),
            "text": pd.array(["a", None], dtype="string"),
            "cat": pd.Categorical(["x", "y"]),
        }
    ),
    "no rows": pd.DataFrame({"a": pd.Series([], dtype=float)}),
}


def _answer_json(answer: Any) -> str:
    """The body MLflow's scoring server writes for an answer, or how it fails."""
    from mlflow.pyfunc.scoring_server import predictions_to_json

    out = io.StringIO()
    try:
        predictions_to_json(answer, out)
    except TypeError as exc:  # e.g. pd.NA: not JSON, either way
        return f"TypeError: {exc}"
    return out.getvalue()


@pytest.mark.parametrize("table", ANSWER_TABLES.values(), ids=ANSWER_TABLES.keys())
def test_table_answers_become_the_json_mlflow_would_write(table: pd.DataFrame) -> None:
    assert _answer_json(answer_records(table)) == _answer_json(table)


def test_answers_other_than_a_table_of_unique_columns_are_left_to_mlflow() -> None:
    repeated = pd.DataFrame([[1.0, 2.0]], columns=["a", "a"])
    assert answer_records(repeated) is repeated
    answer = np.arange(3.0)
    assert answer_records(answer) is answer


class RecordsOrTable(PythonModel):
    answers_as_records = False

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        row = {"rows": len(model_input)}
        return [row] if self.answers_as_records else pd.DataFrame([row])


def test_the_server_asks_models_that_can_for_records(tmp_path: Path) -> None:
    import mlflow

    mlflow.pyfunc.save_model(tmp_path / "m", python_model=RecordsOrTable(), pip_requirements=[])
    served, in_process = (mlflow.pyfunc.load_model(str(tmp_path / "m")) for _ in range(2))
    guard = server.build_app(served, ServingConfig())
    assert served.unwrap_python_model().answers_as_records
    assert isinstance(in_process.predict(_rows()), pd.DataFrame)  # only the served one
    assert call(guard, _split(_rows(8))).json() == {"predictions": [{"rows": 8}]}


class Forecasting(RecordsOrTable):
    """A forecaster as the server sees one: an `active` version that can keep windows."""

    remembered = 0

    def __init__(self) -> None:
        self.active = self

    def remember(self, capacity: int) -> None:
        self.remembered = capacity


def test_the_server_tells_a_forecaster_how_many_windows_to_keep(tmp_path: Path) -> None:
    import mlflow

    mlflow.pyfunc.save_model(tmp_path / "m", python_model=Forecasting(), pip_requirements=[])
    served = mlflow.pyfunc.load_model(str(tmp_path / "m"))
    server.build_app(served, ServingConfig(remembered_mb=1.5))
    assert served.unwrap_python_model().remembered == 1_572_864  # bytes
    assert ServingConfig().remembered_mb == 32  # the default: kept


def test_models_without_the_switch_are_served_as_before(app: Guard, pyfunc: Any) -> None:
    assert not hasattr(pyfunc.unwrap_python_model(), "answers_as_records")
    assert call(app, _split(_rows(8))).json() == {"predictions": [{"last_close": 107.0}]}
