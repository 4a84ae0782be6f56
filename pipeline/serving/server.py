"""The scoring server: MLflow's own scoring app, behind a guard, under uvicorn.

`python -m pipeline serve` execs `python -m pipeline.serving.server` (see
production.serve_command), which runs uvicorn with `serving.workers` processes; each loads
the model once (the pyfunc warms itself) and answers:

  GET  /ping /health /version   MLflow's scoring app, unchanged
  POST /invocations             MLflow's request formats (dataframe_split,
                                dataframe_records, inputs/instances; CSV; Parquet)
                                parsed by MLflow's own `invocations`, run by the guard

The guard (a plain ASGI app in front) refuses, before any parsing:
  * a body over `serving.max_body_bytes`: 413, on Content-Length and while a
    streamed (chunked) body arrives;
  * more than `serving.max_in_flight` requests in this process: an immediate 503
    with Retry-After; a request keeps its slot until its work thread is done, so
    work abandoned by a timeout still counts and nothing queues behind it;
  * an unsupported content type (415), a JSON document nested deeper than
    MAX_JSON_DEPTH or not JSON at all (400), a CSV that is not a table (400), a
    Parquet body whose footer promises more than max_rows rows or PARQUET_UNPACK
    times max_body_bytes once unpacked (400).
A request not answered within `serving.request_timeout_s` gets a 504. CSV bodies
become the same rows the JSON path sees (every cell a string) so the model's own
checks speak. Every refusal is `{"error_code": ..., "message": ...}` with a message
of at most MAX_MESSAGE characters: MLflow's stack traces and its quoting of the
whole request ("Failed to predict data '<frame>'") are dropped (the trace goes
to this server's log).

SIGTERM: uvicorn stops accepting, gives in-flight requests `serving.shutdown_grace_s`,
then the process exits; a watchdog makes sure it does within a few seconds.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import math
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pipeline.config import ServingConfig

log = logging.getLogger(__name__)

MODEL_ENV = "PIPELINE_SERVE_MODEL"  # the model URI each worker loads
SETTINGS_ENV = "PIPELINE_SERVE_SETTINGS"  # the serving section, as JSON
MAX_MESSAGE = 450  # characters of a refusal's message
SHOWN_CHARS = 40  # characters of a value quoted back
MAX_JSON_DEPTH = 20  # nested arrays/objects; a request needs 4
MAX_PARQUET_PARTS = 64  # columns, and row groups, of a Parquet body
PARQUET_UNPACK = 16  # a Parquet body may unpack to this many times max_body_bytes
EXIT_AFTER_S = 2.0  # after the app has shut down, the process is ended if still alive

JSON, CSV, PARQUET = "application/json", "text/csv", "application/vnd.apache.parquet"
GET_ROUTES = ("/ping", "/health", "/version")
INVOCATIONS = "/invocations"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()


class Refused(Exception):
    """A request refused with a status and a short message."""

    def __init__(
        self, status: int, code: str, message: str, headers: Iterable[tuple[str, str]] = ()
    ):
        super().__init__(message)
        self.reply = refusal(status, code, message, tuple(headers))


def clip(text: str, limit: int = SHOWN_CHARS) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def refusal(
    status: int, code: str, message: str, headers: tuple[tuple[str, str], ...] = ()
) -> Reply:
    cut = message.split("Traceback (most recent call last)")[0].strip() or "request refused"
    if len(cut) > MAX_MESSAGE:
        cut = cut[: MAX_MESSAGE - 20].rstrip() + " ... (cut)"
    body = json.dumps({"error_code": code, "message": cut}).encode()
    return Reply(status, body, JSON, headers)


# --- what MLflow says, made short -------------------------------------------------------

_REASON = "_pipeline_reason"  # the model's own message, before MLflow quotes the frame on it


def mlflow_reason(exc: Exception) -> str:
    """An MlflowException's message without the request MLflow quotes back in it."""
    from mlflow.pyfunc.scoring_server import SCORING_PROTOCOL_CHANGE_INFO

    message = str(getattr(exc, _REASON, None) or getattr(exc, "message", None) or exc)
    if message.startswith("Failed to enforce schema") and exc.__context__ is not None:
        message = f"Failed to enforce schema: {exc.__context__}"  # not the frame, the reason
    elif message.startswith("Failed to predict data '") and "\nError: " in message:
        message = message.rsplit("\nError: ", 1)[1]
    message = message.replace(SCORING_PROTOCOL_CHANGE_INFO, "").strip()
    return message.split("\nInput: ")[0].strip()  # JSON errors echo the whole body


def answer_records(answer: Any) -> Any:
    """A table answer as the records MLflow's `invocations` would make of it
    (`to_dict(orient="records")`, the same JSON), without pandas' per-column indexing:
    0.8 ms of a one-row, eleven-column answer, several times what the model itself costs.
    Anything else (a table with repeated column names, or with extension types whose
    missing values to_dict words its own way) is left to MLflow."""
    import numpy as np
    import pandas as pd

    if not isinstance(answer, pd.DataFrame) or not answer.columns.is_unique:
        return answer
    plain = (
        isinstance(t, np.dtype) or (isinstance(t, pd.StringDtype) and t.na_value is np.nan)
        for t in answer.dtypes
    )
    if not all(plain):
        return answer
    columns = answer.columns.tolist()
    return [dict(zip(columns, row, strict=True)) for row in answer.to_numpy(dtype=object).tolist()]


class _Reasons:
    """The served pyfunc, noting the model's own reason on a refusal before MLflow's
    `invocations` prefixes the whole frame to it, its table answers made records here."""

    def __init__(self, model: Any):
        self.model = model
        self.metadata = model.metadata

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> Any:
        from mlflow.exceptions import MlflowException

        try:
            return answer_records(self.model.predict(data, params=params))
        except MlflowException as exc:
            setattr(exc, _REASON, mlflow_reason(exc))
            raise


# --- request bodies -----------------------------------------------------------------


def content_type_of(header: str) -> str:
    """The mime type (lower case), or a 415 with MLflow's wording, the value cut short."""
    from mlflow.pyfunc.scoring_server import CONTENT_TYPES

    parts = [p.strip() for p in header.split(";")]
    mime = parts[0].lower()
    params = {k.strip().lower(): v.strip() for k, _, v in (p.partition("=") for p in parts[1:])}
    if mime not in CONTENT_TYPES:
        raise Refused(
            415,
            "BAD_REQUEST",
            "This predictor only supports the following content types: "
            f"Types: {CONTENT_TYPES}. Got '{clip(header)}'.",
        )
    if params.get("charset", "utf-8").lower().strip('"') != "utf-8":
        raise Refused(415, "BAD_REQUEST", "The scoring server only supports UTF-8")
    extra = sorted(set(params) - {"charset"})
    if extra:
        raise Refused(
            415,
            "BAD_REQUEST",
            f"Unrecognized content type parameters: {clip(', '.join(extra))}.",
        )
    return mime


def _too_deep(doc: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    stack = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def not_utf8(exc: UnicodeDecodeError) -> Refused:
    return Refused(
        400,
        "BAD_REQUEST",
        "Invalid input. Ensure that input is a valid UTF-8 encoded string. "
        f"Error: '{exc.reason} at byte {exc.start}'",
    )


def parse_json(body: bytes) -> Any:
    """The JSON document, or a 400: not UTF-8, not JSON, or nested too deeply."""
    try:
        doc = json.loads(body)
    except RecursionError:
        doc = None
        deep = True
    except UnicodeDecodeError as exc:
        raise not_utf8(exc) from None
    except ValueError as exc:  # JSONDecodeError, or an integer of over 4300 digits
        raise Refused(
            400,
            "BAD_REQUEST",
            f"Invalid input. Ensure that input is a valid JSON formatted string. "
            f"Error: '{clip(repr(exc), 120)}'",
        ) from None
    else:
        deep = isinstance(doc, dict | list) and _too_deep(doc)
    if deep:
        raise Refused(
            400,
            "BAD_REQUEST",
            f"JSON nested too deeply: at most {MAX_JSON_DEPTH} levels of arrays and objects",
        )
    return doc


def csv_table(body: bytes) -> dict[str, Any]:
    """A CSV body as the dataframe_split the JSON path sees, every cell a string."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise not_utf8(exc) from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)  # misquoting: refused
    rows: list[list[str]] = []
    try:
        for row in reader:
            if not row:
                continue  # blank line
            if rows and len(row) != len(rows[0]):
                raise Refused(
                    400,
                    "BAD_REQUEST",
                    f"CSV line {reader.line_num} has {len(row)} field(s); "
                    f"the header has {len(rows[0])}",
                )
            rows.append(row)
    except csv.Error as exc:
        raise Refused(
            400, "BAD_REQUEST", f"CSV line {reader.line_num}: {clip(str(exc), 80)}"
        ) from None
    if not rows:
        raise Refused(
            400,
            "BAD_REQUEST",
            "empty CSV: send a header line Date,Open,High,Low,Close,Volume and one line per day",
        )
    header = [name.strip() for name in rows[0]]
    return {"dataframe_split": {"columns": header, "data": rows[1:]}}


def check_parquet(body: bytes, max_rows: int, max_bytes: int) -> None:
    """Refuse a Parquet body that unpacks to more than the server takes: a few KB of
    run-length encoded Parquet can hold millions of rows. Its footer says how much."""
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(io.BytesIO(body)).metadata
    except Exception:
        return  # not Parquet: MLflow's own reader says so, in its words
    groups, columns = meta.num_row_groups, meta.num_columns
    unpacked = 0
    if groups <= MAX_PARQUET_PARTS and columns <= MAX_PARQUET_PARTS:
        unpacked = sum(
            meta.row_group(g).column(c).total_uncompressed_size
            for g in range(groups)
            for c in range(columns)
        )
    if meta.num_rows > max_rows or max(groups, columns) > MAX_PARQUET_PARTS or unpacked > max_bytes:
        raise Refused(
            400,
            "BAD_REQUEST",
            f"Parquet body too large once unpacked: {meta.num_rows} rows, {columns} columns, "
            f"{groups} row groups, {unpacked} bytes (at most {max_rows} rows, "
            f"{MAX_PARQUET_PARTS} columns and row groups, {max_bytes} bytes)",
        )


# --- the guard ------------------------------------------------------------------------


def _header(scope: Scope, name: bytes) -> str | None:
    values = [v for k, v in scope.get("headers", []) if k.lower() == name]
    return values[-1].decode("latin-1") if values else None


async def send_reply(send: Send, reply: Reply) -> None:
    headers = [
        (b"content-type", reply.content_type.encode()),
        (b"content-length", str(len(reply.body)).encode()),
        *((k.encode(), v.encode()) for k, v in reply.headers),
    ]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})


class Guard:
    """The ASGI app uvicorn runs: limits first, then MLflow's scoring (see module doc)."""

    def __init__(
        self, scoring_app: ASGIApp, model: Any, settings: ServingConfig, exit_watchdog: bool
    ):
        self.scoring_app = scoring_app
        self.model = _Reasons(model)
        self.schema = model.metadata.get_input_schema()
        self.settings = settings
        self.slots = threading.BoundedSemaphore(settings.max_in_flight)
        self.pool = ThreadPoolExecutor(settings.max_in_flight, thread_name_prefix="invocation")
        self.exit_watchdog = exit_watchdog

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] != "http":
            return  # websockets: not served (the connection is refused)
        else:
            try:
                await self._http(scope, receive, send)
            except Refused as exc:
                await send_reply(send, exc.reply)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def close(self) -> None:
        """No new work; running work is abandoned to the process exit."""
        self.pool.shutdown(wait=False, cancel_futures=True)
        if self.exit_watchdog:  # nothing (a stuck thread, a join at exit) keeps it alive
            timer = threading.Timer(EXIT_AFTER_S, os._exit, args=(0,))
            timer.daemon = True
            timer.start()

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        if path not in (*GET_ROUTES, INVOCATIONS):
            raise Refused(
                404,
                "ENDPOINT_NOT_FOUND",
                f"no such endpoint {clip(path)}: POST /invocations, GET /ping /health /version",
            )
        allowed = ("POST",) if path == INVOCATIONS else ("GET", "HEAD")
        if method not in allowed:
            raise Refused(
                405,
                "BAD_REQUEST",
                f"{clip(method)} {path}: use {' or '.join(allowed)}",
                [("allow", ", ".join(allowed))],
            )
        limit = self.settings.max_body_bytes
        length = _header(scope, b"content-length")
        if length is not None:
            if not (length.strip().isascii() and length.strip().isdigit()):
                raise Refused(400, "BAD_REQUEST", f"Content-Length {clip(length)!r} is not a size")
            if int(length) > limit:
                raise Refused(
                    413,
                    "RESOURCE_LIMIT_EXCEEDED",
                    f"request body of {int(length)} bytes is over the {limit}-byte limit: "
                    "send fewer rows (the model uses only the most recent ones)",
                )
        if path != INVOCATIONS:
            from pipeline.serving import production

            if path == "/health" and production.stale:  # the registry moved to what we cannot load
                raise Refused(503, "MODEL_STALE", production.stale)
            await self.scoring_app(scope, receive, send)
            return
        mime = content_type_of(_header(scope, b"content-type") or "")
        if not self.slots.acquire(blocking=False):
            raise Refused(
                503,
                "TEMPORARILY_UNAVAILABLE",
                f"busy: {self.settings.max_in_flight} requests already in progress here; "
                "retry in a moment",
                [("retry-after", "1")],
            )
        deadline = time.monotonic() + self.settings.request_timeout_s
        try:
            job = await self._start(receive, mime, deadline)
        except BaseException:
            self.slots.release()
            raise
        if job is not None:  # else the client went away
            await send_reply(send, await self._answer(job, deadline))

    async def _start(self, receive: Receive, mime: str, deadline: float) -> Future[Reply] | None:
        """Read the body (holding a slot) and hand it to a worker thread, which keeps the
        slot until it is done."""
        body = await self._body(receive, deadline)
        if body is None:
            self.slots.release()
            return None
        try:
            job = self.pool.submit(self.work, body, mime)
        except RuntimeError:  # shutting down
            raise Refused(
                503, "TEMPORARILY_UNAVAILABLE", "server shutting down", [("retry-after", "1")]
            ) from None
        job.add_done_callback(lambda _: self.slots.release())
        return job

    async def _body(self, receive: Receive, deadline: float) -> bytes | None:
        limit, size, chunks = self.settings.max_body_bytes, 0, []
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise Refused(
                    408,
                    "DEADLINE_EXCEEDED",
                    f"request body not received within {self.settings.request_timeout_s:g} s",
                ) from None
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise Refused(
                    413,
                    "RESOURCE_LIMIT_EXCEEDED",
                    f"request body is over the {limit}-byte limit: send fewer rows "
                    "(the model uses only the most recent ones)",
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _answer(self, job: Future[Reply], deadline: float) -> Reply:
        waiting = asyncio.wrap_future(job)
        done, _ = await asyncio.wait({waiting}, timeout=max(0.0, deadline - time.monotonic()))
        if not done:  # the thread goes on and keeps its slot; the client hears now
            return refusal(
                504,
                "DEADLINE_EXCEEDED",
                f"no answer within {self.settings.request_timeout_s:g} s; try fewer rows",
            )
        return waiting.result()

    def work(self, body: bytes, mime: str) -> Reply:
        """Parse and predict (in a worker thread); never raises."""
        from mlflow.exceptions import MlflowException
        from mlflow.pyfunc.scoring_server import invocations

        try:
            data: Any = body
            if mime == CSV:
                data, mime = csv_table(body), JSON
            elif mime == JSON:
                doc = parse_json(body)
                data = doc if isinstance(doc, dict) else body  # MLflow words the rest
            elif mime == PARQUET:
                s = self.settings
                check_parquet(body, s.max_rows, PARQUET_UNPACK * s.max_body_bytes)
            result = invocations(data, mime, self.model, self.schema)
            if result.status != 200:
                return refusal(result.status, "BAD_REQUEST", str(result.response))
            return Reply(200, str(result.response).encode(), result.mimetype)
        except Refused as exc:
            return exc.reply
        except MlflowException as exc:
            trace = exc.json_kwargs.get("stack_trace")
            if trace:
                log.warning("refused a request: %s", trace)
            status = exc.get_http_status_code()
            code = exc.error_code if 400 <= status < 500 else "BAD_REQUEST"
            return refusal(status if 400 <= status < 500 else 400, code, mlflow_reason(exc))
        except Exception as exc:  # pandas/numpy on an odd table while MLflow reads it
            log.warning("refused a request", exc_info=True)
            return refusal(
                400,
                "BAD_REQUEST",
                f"the request could not be read as a table of bars: "
                f"{type(exc).__name__}: {clip(str(exc), 120)}",
            )


# --- the app and the process ------------------------------------------------------------


def answer_as_records(model: Any) -> None:
    """A Python model that can answer as JSON-ready records (a class attribute
    `answers_as_records`) is told to: a DataFrame answer would only be taken apart again."""
    from mlflow.exceptions import MlflowException

    try:
        python_model = model.unwrap_python_model()
    except (MlflowException, AttributeError):  # another flavour: its answers as they come
        return
    if hasattr(type(python_model), "answers_as_records"):
        python_model.answers_as_records = True


def build_app(model: Any, settings: ServingConfig, exit_watchdog: bool = False) -> Guard:
    """MLflow's scoring app for `model` (a loaded pyfunc) behind the guard."""
    from mlflow.pyfunc.scoring_server import init

    answer_as_records(model)
    return Guard(init(model), model, settings, exit_watchdog)


def settings_from_env() -> ServingConfig:
    return ServingConfig.model_validate_json(os.environ[SETTINGS_ENV])


def create_app() -> Guard:
    """uvicorn's factory, once per worker process: load (and warm) the model, guard it."""
    import mlflow

    settings = settings_from_env()
    model = mlflow.pyfunc.load_model(os.environ[MODEL_ENV])
    return build_app(model, settings, exit_watchdog=True)


def main() -> None:
    import uvicorn

    settings = settings_from_env()
    uvicorn.run(
        "pipeline.serving.server:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        lifespan="on",
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_s),
        timeout_worker_healthcheck=60,  # a worker loading TensorFlow is slow to answer
        server_header=False,
    )


if __name__ == "__main__":
    main()
