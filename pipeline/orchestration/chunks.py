"""Tickers in chunks: one task per chunk and step, however many tickers.

A task instance costs about a second of scheduling and start-up under `airflow dags
test`, and more the more of them a run has; a GX run costs half a second whatever its
size, and so does loading a model. So the DAGs map over chunks of `orchestration.
chunk_size` tickers, not over tickers: 394 tickers are 4 chunks, the four-stock
default one. Inside a chunk each ticker still succeeds, fails or is skipped on its own
(pipeline/orchestration/dag_tasks.py journals each), and only the tickers still going
travel on to the next step. The steps that gain from seeing the whole chunk at once
(validate: one GX run; monitor and forecast: one model lookup and load, one MLflow run,
one write) have a chunk form here; the others run per ticker.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pipeline.orchestration import steps

if TYPE_CHECKING:
    from pipeline.config import Config

Chunk = dict[str, Any]  # {day, pipeline_run_id, chunk, chunks, members: {ticker: carry}}
Outcomes = dict[str, Mapping[str, Any] | Exception]


def split(tickers: list[str], size: int) -> list[list[str]]:
    """`tickers` in order, in chunks of at most `size`, as even as that allows."""
    if not tickers:
        return []
    n = -(-len(tickers) // size)
    per, extra = divmod(len(tickers), n)
    bounds = [i * per + min(i, extra) for i in range(n + 1)]
    return [tickers[a:b] for a, b in itertools.pairwise(bounds)]


def start(tickers: list[str], day: dt.date, run_id: str, size: int, **extra: Any) -> list[Chunk]:
    """The starting carry of every chunk (each member's as steps.start makes it; `extra`,
    such as the retrain's plan, once per chunk, not once per member)."""
    parts = split(tickers, size)
    return [
        {
            "day": day.isoformat(),
            "pipeline_run_id": run_id,
            "chunk": i,
            "chunks": len(parts),
            "extra": extra,
            "members": {t: dict(steps.start(t, day, run_id)) for t in part},
        }
        for i, part in enumerate(parts)
    ]


def day_of(chunk: Chunk) -> dt.date:
    return dt.date.fromisoformat(chunk["day"])


def members(chunks: list[Chunk]) -> list[dict[str, Any]]:
    """Every ticker still going, over all chunks, in order, each with its chunk's extra."""
    return [{**c, **chunk["extra"]} for chunk in chunks for c in chunk["members"].values()]


# What a member's carry drops between tasks: the report's figures (the journal has them)
# and the validation's summary, which nothing downstream reads. The carry crosses XCom
# and the task log at every step: 394 tickers' forecasts in it cost megabytes a day.
DROPPED = frozenset(
    {"forecast", "monitoring", "quarantined_rows", "quarantined", "missing_sessions",
     "rows", "revisions", "checked", "first_date", "last_date", "data_docs"}
)  # fmt: skip


def slim(carry: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in carry.items() if k not in DROPPED}


def validate(cfg: Config, chunk: Chunk) -> Outcomes:
    from pipeline.data import validate as step

    raws = {t: c["raw_path"] for t, c in chunk["members"].items()}
    docs = cfg.layout.data_docs() / f"chunk-{chunk['chunk']}"
    return dict(step.run_chunk(cfg, day_of(chunk), raws, docs))


def monitor(cfg: Config, chunk: Chunk) -> Outcomes:
    from pipeline.monitoring import monitor as step

    return dict(step.run_many(cfg, list(chunk["members"]), day_of(chunk)))


def forecast(cfg: Config, chunk: Chunk) -> Outcomes:
    from pipeline.monitoring import forecast as step

    return dict(step.run_many(cfg, list(chunk["members"]), day_of(chunk)))


BATCHED: dict[str, Callable[[Config, Chunk], Outcomes]] = {
    "validate": validate,
    "monitor": monitor,
    "forecast": forecast,
}


def run(cfg: Config, name: str, chunk: Chunk) -> Outcomes:
    """Step `name` for every member of the chunk: each ticker's added keys or exception."""
    if not chunk["members"]:
        return {}
    if name in BATCHED:
        return BATCHED[name](cfg, chunk)
    out: Outcomes = {}
    for ticker, c in chunk["members"].items():
        try:
            out[ticker] = steps.STEPS[name](cfg, {**c, **chunk["extra"]})
        except Exception as exc:  # one ticker's problem is its own
            out[ticker] = exc
    return out
