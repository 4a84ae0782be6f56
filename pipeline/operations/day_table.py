"""The day's report as people read it: the table at the end of `make run`, or for a large
universe a screenful of summary with the full table in a file beside the report."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.schedule import named

SUMMARY_ABOVE = 20  # tickers: above this, the console gets a summary, the file the table


def table(rep: dict[str, Any], retrain_note: str = "") -> str:
    """The report as a table a person reads at the end of `make run`."""
    head = f"{'ticker':<8} {'last close':>10} {'forecast':>10} {'80 % interval':>21}"
    head += f" {'model':>16}  status"
    lines = [f"day {rep['day']}", head, "-" * len(head)]
    lines += [row_line(t, r) for t, r in rep["tickers"].items()]
    if line := universe_line(rep):
        lines.append(line)
    if retrain_note:
        lines.append(f"retrain: {retrain_note}")
    return "\n".join(lines)


def universe_line(rep: dict[str, Any]) -> str | None:
    """The universe model judged as one (operations/alarms.py), in a line; None for a model
    per ticker."""
    u = rep.get("universe")
    if not u:
        return None
    if not u.get("sessions"):
        return f"universe model v{u['version']}: no realised session to judge it on yet"
    line = (
        f"universe model v{u['version']} over its last {u['sessions']} sessions"
        f" ({u['stocks']}+ stocks): error {u['excess_pct']:+.3f} % of the close against"
        f" naive's, worse on {u['worse_sessions']} (p = {u['worse_pvalue']:.2g})"
    )
    if u.get("coverage_80") is not None:
        line += f"; 80 % coverage {100 * u['coverage_80']:.1f} % (p = {u['coverage_pvalue']:.2g})"
    return line


def row_line(ticker: str, r: dict[str, Any]) -> str:
    def num(v: Any) -> str:
        return f"{v:.2f}" if isinstance(v, int | float) else "-"

    band = f"[{num(r['lower_80'])}, {num(r['upper_80'])}]" if r["lower_80"] else "-"
    state = r["status"] + (f" ({r['error']})" if r["error"] else "")
    state += f"; alerts: {', '.join(r['alerts'])}" if r["alerts"] else ""
    if rows := r.get("quarantined_rows"):
        state += f"; {rows} older row(s) quarantined"
    if gaps := r.get("missing_sessions"):
        state += f"; {gaps} missing session(s)"
    version = served_by(r) or "-"
    return (
        f"{ticker:<8} {num(r['last_close']):>10} {num(r['forecast']):>10} {band:>21} "
        f"{version:>16}  {state}"
    )


def served_by(r: dict[str, Any]) -> str | None:
    """The version that forecast a ticker and what it forecasts with: `v3 LSTM`,
    `v2 HAR fallback` (lifecycle/fallback.py); None when none did."""
    if not r.get("model_version"):
        return None
    return f"v{r['model_version']} {r.get('forecaster') or ''}".strip()


def summary(rep: dict[str, Any], retrain_note: str = "", worst: int = 10) -> str:
    """A large universe's day in a screenful: counts by status, the tickers on which the
    model has done worst against naive lately, and every ticker that did not get its
    forecast, with its reason (the full table goes to a file: `table`)."""
    rows = rep["tickers"]
    counts: dict[str, int] = {}
    for r in rows.values():
        key = r["status"].split(" (")[0]
        counts[key] = counts.get(key, 0) + 1
    lines = [
        f"day {rep['day']}: {len(rows)} tickers; "
        + ", ".join(f"{n} {s}" for s, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    ]
    served: dict[str, int] = {}
    for r in rows.values():
        if who := served_by(r):
            served[who] = served.get(who, 0) + 1
    if served:
        lines.append("forecast by: " + ", ".join(f"{who} ({n})" for who, n in served.items()))
    scored = sorted(
        ((r["recent_ratio"], t) for t, r in rows.items() if r.get("recent_ratio") is not None),
        reverse=True,
    )
    if scored:
        shown = ", ".join(f"{t} {ratio:.2f}" for ratio, t in scored[:worst])
        lines.append(f"worst recent MAE / naive's: {shown}")
    grouped: dict[tuple[str, str], list[str]] = {}
    for t, r in rows.items():
        if r["status"] != "forecast":
            grouped.setdefault((r["status"], r["error"] or "-"), []).append(t)
    for (state, why_not), names in grouped.items():
        who = names[0] if len(names) == 1 else named(names)
        lines.append(f"  {who} {state}: {why_not}")
    row_notes = [
        f"{t} {r['quarantined_rows']}" for t, r in rows.items() if r.get("quarantined_rows")
    ]
    if row_notes:
        lines.append(f"older rows quarantined (ticker rows): {', '.join(row_notes)}")
    gap_notes = [
        f"{t} {r['missing_sessions']}" for t, r in rows.items() if r.get("missing_sessions")
    ]
    if gap_notes:
        lines.append(f"missing sessions (ticker count): {', '.join(gap_notes)}")
    if line := universe_line(rep):
        lines.append(line)
    if retrain_note:
        lines.append(f"retrain: {retrain_note}")
    return "\n".join(lines)


def table_path(cfg: Config, day: dt.date) -> Path:
    return cfg.layout.root / "reports" / "daily" / f"{day.isoformat()}.txt"


def console(cfg: Config, rep: dict[str, Any], retrain_note: str = "") -> str:
    """What `make run` prints at the end: the table, or for a large universe the summary,
    with the full table written beside the report."""
    full = table(rep, retrain_note)
    if len(rep["tickers"]) <= SUMMARY_ABOVE:
        return full
    path = table_path(cfg, dt.date.fromisoformat(rep["day"]))
    path.write_text(full + "\n")
    return f"{summary(rep, retrain_note)}\nfull table: {path}"
