"""Fail fast on a dead tracking server instead of waiting minutes in MLflow's retries.

MLflow retries a refused connection with exponential backoff (about 4 minutes by
default) and then reports whatever the caller was doing, e.g. "no production
model". One short probe before the first call says what is actually wrong.
"""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

_REACHED: set[str] = set()  # URIs already probed by this process


class TrackingUnreachable(RuntimeError):
    """The tracking server (or database) at a URI did not answer."""


def _probe_http(uri: str, timeout_s: float) -> None:
    import requests

    # Any HTTP answer (even 401 from an auth-enabled server) means the server is up.
    requests.get(uri.rstrip("/") + "/health", timeout=timeout_s, allow_redirects=False)


def _probe_tcp(host: str, port: int, timeout_s: float) -> None:
    with socket.create_connection((host, port), timeout=timeout_s):
        pass


def ensure_reachable(uri: str, timeout_s: float, retries: int) -> None:
    """Return if `uri` answers within `timeout_s` (1 + `retries` tries), else raise
    TrackingUnreachable naming it. Local stores (sqlite, file) are not probed."""
    parts = urlsplit(uri)
    scheme = parts.scheme.split("+")[0]
    if uri in _REACHED or scheme in ("", "file", "sqlite") or not parts.hostname:
        return
    if scheme in ("http", "https"):
        probe = lambda: _probe_http(uri, timeout_s)  # noqa: E731
    else:  # a database URL (postgresql://, mysql://): is anything listening?
        default = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}.get(scheme, 0)
        port = parts.port or default
        if not port:
            return
        probe = lambda: _probe_tcp(str(parts.hostname), port, timeout_s)  # noqa: E731
    last: Exception | None = None
    for attempt in range(retries + 1):
        try:
            probe()
        except OSError as exc:  # requests' ConnectionError and Timeout are OSErrors too
            last = exc
            if attempt < retries:
                time.sleep(min(1.0, timeout_s))
            continue
        _REACHED.add(uri)
        return
    shown = parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else ""))
    raise TrackingUnreachable(
        f"tracking server unreachable at {shown.geturl()} ({retries + 1} tries, "
        f"{timeout_s:g} s timeout each; tracking.connect_timeout_s / connect_retries): "
        f"{type(last).__name__}"
    )
