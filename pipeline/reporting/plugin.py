"""The Airflow UI plugin: the day's report pages, inside the Airflow UI, for logged-in users.

Registered through the `airflow.plugins` entry point (pyproject.toml), so every Airflow
of this install has it (`make ui`, the stack, the image). Airflow 3's plugin interface:

  fastapi_apps    `/forecast-reports/` in the API server: the pages, newest first
                  (`/`), a day's page (`/day/YYYY-MM-DD`), and a `price_daily` run's
                  page (`/run/{dag_id}/{run_id}`, redirected to its day's);
  external_views  "Forecast reports" in the nav menu, and a "Report" tab on every run
                  of `price_daily` (Airflow fills in {DAG_ID} and {RUN_ID}).

A plugin's endpoints are not behind Airflow's login by themselves: every route here asks
Airflow who the caller is first (the UI's session cookie or an API bearer token, checked
by Airflow's own `get_user`) and refuses an anonymous or invalid one (401/403). Airflow
and the state are imported when a page is asked for, not when Airflow loads its plugins.
"""

from __future__ import annotations

import datetime as dt
import html
from pathlib import Path
from typing import Annotated, Any

from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from pipeline.schedule import DAILY

PREFIX = "/forecast-reports"
_bearer = HTTPBearer(auto_error=False)


async def logged_in(
    request: Request, bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Any:
    """The caller as Airflow knows it, or a 401/403 from Airflow's own check."""
    from airflow.api_fastapi.core_api.security import get_user

    return await get_user(request, None, bearer)


app = FastAPI(title="Forecast reports", dependencies=[Depends(logged_in)])


def reports_dir() -> Path:
    from pipeline.config import load_config

    return load_config().layout.root / "reports" / "daily"


def parse_day(text: str) -> dt.date:
    """A run day from the URL, or a 404: only YYYY-MM-DD ever becomes a path."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise HTTPException(404, f"not a day (YYYY-MM-DD): {text[:40]!r}") from None


@app.get("/", response_class=HTMLResponse)
def index() -> str:
    """Every day's page, newest first."""
    pages = sorted(reports_dir().glob("????-??-??.html"), reverse=True)
    items = "".join(
        f'<li><a href="day/{html.escape(p.stem)}">{html.escape(p.stem)}</a></li>' for p in pages
    )
    return (
        "<!doctype html><meta charset='utf-8'><title>Forecast reports</title>"
        "<body style='font:14px system-ui;margin:24px'><h1>Forecast reports</h1>"
        f"<ul>{items or '<li>none yet: run a day (make run)</li>'}</ul></body>"
    )


@app.get("/day/{day}")
def day_page(day: str) -> FileResponse:
    page = reports_dir() / f"{parse_day(day).isoformat()}.html"
    if not page.is_file():
        raise HTTPException(
            404, f"no report page for {day} (older pages are removed: make report DATE={day})"
        )
    return FileResponse(page, media_type="text/html")


@app.get("/run/{dag_id}/{run_id}")
def run_page(dag_id: str, run_id: str) -> RedirectResponse:
    """A run's page: its day's, looked up in Airflow's metadata DB."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    if dag_id != DAILY:
        raise HTTPException(404, f"only {DAILY} runs have a report page")
    with create_session() as session:
        run = session.query(DagRun).filter_by(dag_id=dag_id, run_id=run_id).one_or_none()
        if run is None:
            raise HTTPException(404, f"no run {run_id[:60]!r} of {dag_id}")
        stamp = run.logical_date or run.run_after
    day = dt.datetime.fromtimestamp(stamp.timestamp(), tz=dt.UTC).date()
    return RedirectResponse(f"{PREFIX}/day/{day.isoformat()}")


APPS = [{"app": app, "url_prefix": PREFIX, "name": "Forecast reports"}]
VIEWS = [
    {"name": "Forecast reports", "href": f"{PREFIX}/", "destination": "nav",
     "category": "browse", "url_route": "forecast-reports"},
    {"name": "Report", "href": f"{PREFIX}/run/{{DAG_ID}}/{{RUN_ID}}",
     "destination": "dag_run", "url_route": "forecast-report"},
]  # fmt: skip


class ForecastReports(AirflowPlugin):
    name = "forecast_reports"
    fastapi_apps = APPS
    external_views = VIEWS
