"""The day's report page as a person sees it: opened in headless Chromium (Debian's
`chromium`, driven by Playwright), its table, sorting, filter, fans and numbers checked
against the day's JSON report."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from pipeline.reporting import page
from tests.report_support import DAY, report_state

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NUMBERS = ("last_close", "forecast", "lower_80", "upper_80", "lower_95", "upper_95")


@pytest.fixture(scope="module")
def browser_page(tmp_path_factory: pytest.TempPathFactory) -> Any:
    assert CHROMIUM, "the browser tests need Chromium: apt-get install chromium (`make test` does)"
    from playwright.sync_api import sync_playwright

    cfg, rep = report_state(tmp_path_factory.mktemp("browser"))
    path = page.write(cfg, DAY)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        tab = browser.new_page(viewport={"width": 1400, "height": 900})
        errors: list[str] = []
        tab.on("pageerror", lambda exc: errors.append(str(exc)))
        tab.goto(path.as_uri())
        tab.wait_for_selector("body[data-ready='1']", timeout=10_000)
        yield tab, rep, errors
        browser.close()


def order(tab: Any) -> list[str]:
    return [tr.get_attribute("data-ticker") for tr in tab.locator("#tickers tbody tr").all()]


def test_every_ticker_is_a_row_with_the_days_numbers(browser_page: Any) -> None:
    tab, rep, errors = browser_page
    assert errors == []
    assert sorted(order(tab)) == sorted(rep["tickers"])
    for ticker, row in rep["tickers"].items():
        cells = {
            c.get_attribute("data-col"): c.inner_text()
            for c in tab.locator(f"tr[data-ticker='{ticker}'] td").all()
        }
        assert cells["status"] == row["status"]
        for key in NUMBERS:
            assert cells[key] == ("" if row[key] is None else f"{row[key]:.2f}"), (ticker, key)
    assert "forecast: 3" in tab.locator("#counts").inner_text()
    assert "v3 LSTM (3 tickers)" in tab.locator("#models").inner_text()
    assert "interval coverage drifted (AAPL)" in tab.locator("#retrain").inner_text()


def test_a_header_click_sorts_and_a_second_reverses(browser_page: Any) -> None:
    tab, rep, _ = browser_page
    widths = {
        t: 100 * (r["upper_80"] - r["lower_80"]) / r["last_close"]
        for t, r in rep["tickers"].items()
        if r["lower_80"] is not None
    }
    tab.click("th[data-key='width_80']")
    by_width = sorted(widths, key=widths.__getitem__)
    assert order(tab) == [*by_width, "MSFT"]  # no band: last either way
    assert tab.get_attribute("th[data-key='width_80']", "aria-sort") == "ascending"
    tab.click("th[data-key='width_80']")
    assert order(tab) == [*reversed(by_width), "MSFT"]
    tab.click("th[data-key='ticker']")
    assert order(tab) == sorted(rep["tickers"])


def test_a_fan_is_drawn_and_opens_larger(browser_page: Any) -> None:
    tab, _, _ = browser_page
    fan = tab.locator("tr[data-ticker='GOOG'] td[data-col='fan'] svg")
    close = fan.locator("path.close").get_attribute("d")
    assert close.count("L") == 59  # the last 60 closes
    dots = "".join(fan.locator(f"path.{k}").get_attribute("d") or "" for k in ("in", "edge", "out"))
    assert dots.count("h0") == 60  # a realised close for every session of the window
    assert fan.locator("path.b80").get_attribute("d").count("V") == 61  # and today's band
    msft = tab.locator("tr[data-ticker='MSFT'] td[data-col='fan'] svg")  # its closes, no bands
    assert msft.locator("path.close").count() == 1 and not msft.locator("path.b80").get_attribute(
        "d"
    )
    fan.click()
    big = tab.locator("dialog#big[open] svg")
    assert big.count() == 1 and int(big.get_attribute("width")) > 500
    assert "GOOG" in tab.locator("#big-title").inner_text()
    tab.keyboard.press("Escape")


def test_filter_and_the_held_out_list(browser_page: Any, tmp_path: Path) -> None:
    tab, _, _ = browser_page
    tab.fill("#filter", "quarant")
    visible = [t for t in order(tab) if tab.locator(f"tr[data-ticker='{t}']").is_visible()]
    assert visible == ["MSFT"] and tab.locator("#shown").inner_text() == "1 of 4 tickers"
    tab.fill("#filter", "")
    tab.select_option("#status", "forecast")
    assert tab.locator("#shown").inner_text() == "3 of 4 tickers"
    held = tab.locator("#held").inner_text()
    assert "MSFT: quarantined: validation: high_is_highest" in held
    assert "row of 2013-01-15 quarantined (open_in_range) Open=99" in held
    assert tab.locator("#health svg path[data-series='coverage_80']").count() == 1
