"""The guard: the ASGI app uvicorn runs, admission control in front of MLflow's scoring app.

It routes (404, 405), refuses a body over `serving.max_body_bytes` before reading it (413),
and on /invocations takes one of `serving.max_in_flight` slots or answers an immediate 503;
the body, read within `serving.request_timeout_s` (else 408), goes to a worker thread that
parses it (bodies.py) and runs MLflow's `invocations` on the served model (answers.py),
keeping its slot until done; no answer by the deadline is a 504. On shutdown it takes no new
work, and a server process ends EXIT_AFTER_S later. In full: server.py's module doc.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from pipeline.sections import ServingConfig
from pipeline.serving import follower
from pipeline.serving.answers import Reasons, mlflow_reason
from pipeline.serving.bodies import (
    CSV,
    JSON,
    PARQUET,
    PARQUET_UNPACK,
    Refused,
    Reply,
    check_parquet,
    clip,
    content_type_of,
    csv_table,
    parse_json,
    refusal,
)

log = logging.getLogger(__name__)

EXIT_AFTER_S = 2.0  # after the app has shut down, the process is ended if still alive
GET_ROUTES = ("/ping", "/health", "/version")
INVOCATIONS = "/invocations"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


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
        self.model = Reasons(model)
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
            if path == "/health" and follower.stale:  # the registry moved to what we cannot load
                raise Refused(503, "MODEL_STALE", follower.stale)
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
