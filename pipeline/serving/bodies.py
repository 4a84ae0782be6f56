"""Request bodies of /invocations, read or refused, and the shape of every refusal.

A refusal is a `Reply` of `{"error_code": ..., "message": ...}` whose message is cut to
MAX_MESSAGE characters (values quoted back to SHOWN_CHARS), raised as `Refused`. Here a
body's content type is checked against MLflow's (415), a JSON document is parsed and
refused when it is not UTF-8, not JSON or nested deeper than MAX_JSON_DEPTH (400), a CSV
becomes the dataframe_split the JSON path sees, every cell a string, or a 400 when it is
not a table, and a Parquet body whose footer promises more than the server takes is
refused (400) before anything unpacks it. Pure functions of the bytes: the guard
(pipeline/serving/guard.py) decides when they run.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

MAX_MESSAGE = 450  # characters of a refusal's message
SHOWN_CHARS = 40  # characters of a value quoted back
MAX_JSON_DEPTH = 20  # nested arrays/objects; a request needs 4
MAX_PARQUET_PARTS = 64  # columns, and row groups, of a Parquet body
PARQUET_UNPACK = 16  # a Parquet body may unpack to this many times max_body_bytes

JSON, CSV, PARQUET = "application/json", "text/csv", "application/vnd.apache.parquet"


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
