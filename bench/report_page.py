"""The day's report page at index scale: its size, the time to write it, and the time it
takes to open in headless Chromium.

    .venv/bin/python -m bench.report_page [--tickers 394] [--loads 5]

Builds a throw-away state from the embedded S&P 500 stocks up to 2018-02-07 (the report
tests' state, tests/report_support.py: 70 sessions of stored, realised forecasts a ticker,
with HAR's bands), writes the page as the daily DAG's report task does
(pipeline.reporting.page.write), and opens it `--loads` times in Debian's Chromium through
Playwright, timing navigation until the page has drawn every row and fan. Prints one JSON
object. Aim (the report page issue): under 5 MB, open in under 2 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from pipeline.data.ingest import sample_tickers
from pipeline.reporting import page
from tests.report_support import report_state

DAY = dt.date(2018, 2, 7)


def open_times(path: Path, loads: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    times = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        for _ in range(loads):
            tab = browser.new_page(viewport={"width": 1400, "height": 900})
            start = time.perf_counter()
            tab.goto(path.as_uri())
            tab.wait_for_selector("body[data-ready='1']", timeout=60_000)
            times.append(time.perf_counter() - start)
            rows = tab.locator("#tickers tbody tr").count()
            tab.close()
        browser.close()
    assert rows > 0
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickers", type=int, default=394)
    parser.add_argument("--loads", type=int, default=5)
    args = parser.parse_args()
    tickers = tuple(sample_tickers("sp500")[: args.tickers])
    with tempfile.TemporaryDirectory() as tmp:
        cfg, rep = report_state(Path(tmp), tickers, "sp500", DAY)
        start = time.perf_counter()
        where = page.write(cfg, DAY)
        write_s = time.perf_counter() - start
        times = open_times(where, args.loads)
        out = {
            "tickers": len(rep["tickers"]),  # type: ignore[arg-type]
            "page_bytes": where.stat().st_size,
            "write_s": round(write_s, 2),
            "open_s_median": round(statistics.median(times), 3),
            "open_s_max": round(max(times), 3),
            "loads": len(times),
            "cpu_cores": os.cpu_count(),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
