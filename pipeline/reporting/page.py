"""The day's report page: one self-contained HTML file beside the day's JSON report.

state/reports/daily/<day>.html holds its data as JSON, gzipped and in base64 (about 0.6 MB
at 394 stocks, not 2 MB: it is kept a month, `retention.pages_days`), and draws everything
in the browser (plain JavaScript, inline SVG; nothing fetched when it is viewed; the
browser's DecompressionStream unpacks the data: Chrome 80, Firefox 113, Safari 16.4 on):
the header (day, the versions that served and how many tickers each, counts by status,
the retrain asked for and why), the model's health over the last 60 sessions, a sortable,
filterable table of every ticker with a fan that opens larger on a click, and every
quarantine and held-out ticker with its reason. What it shows is gathered by
page_data.py.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
import math
import re
from importlib import resources
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.operations import daily
from pipeline.reporting import page_data


def page_path(cfg: Config, day: dt.date) -> Path:
    return daily.report_path(cfg, day).with_suffix(".html")


def render(data: dict[str, Any]) -> str:
    """The page for `data` (page_data.gather): the template with the data embedded, as
    strict JSON (JSON.parse refuses NaN), gzipped, in base64: no text a vendor sent can
    close the data block, and the same data give the same page (no time in the gzip)."""
    template = resources.files("pipeline.reporting").joinpath("template.html").read_text()
    text = json.dumps(strict(data), separators=(",", ":")).encode()
    embedded = base64.b64encode(gzip.compress(text, compresslevel=9, mtime=0)).decode()
    title = f"Forecasts {data['day']}"
    return template.replace("__TITLE__", title).replace("__DATA__", embedded)


def embedded(html: str) -> dict[str, Any]:
    """The data a page embeds (render's inverse: for tests and tools reading a page)."""
    block = re.search(r'<script[^>]* id="data"[^>]*>([^<]*)</script>', html)
    if block is None:
        raise ValueError("no data block in this page")
    return dict(json.loads(gzip.decompress(base64.b64decode(block.group(1)))))


def strict(value: Any) -> Any:
    """NaN and infinities as null, all the way down: JSON.parse refuses them."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict(v) for v in value]
    return value


def write(cfg: Config, day: dt.date) -> Path:
    """Write the day's page from what the day stored; FileNotFoundError without its report."""
    where = page_path(cfg, day)
    html = render(page_data.gather(cfg, day))
    tmp = where.with_suffix(".html.tmp")
    tmp.write_text(html)
    tmp.replace(where)  # a reader never sees half a page
    return where
