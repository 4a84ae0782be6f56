"""The machine's PostgreSQL and Redis, as the stack uses them: it never starts or stops them.

`check_backing_services` says (as `StartFailed`) when either is not reachable at
`stack.postgres_*` / `stack.redis_*`; `create_databases` makes one database per store
(Airflow, MLflow, Optuna; existing ones are kept) and `drop_databases` removes them for
throw-away stacks; `connect` opens a connection to that PostgreSQL, and `dag_registered`
asks Airflow's database whether the dag-processor has parsed a DAG yet.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psycopg2.extensions

from pipeline.config import Config
from pipeline.deployment.processes import StartFailed


def connect(cfg: Config, dbname: str = "postgres", **kw: object) -> psycopg2.extensions.connection:
    """A connection to the local PostgreSQL the stack uses (`stack.postgres_*`)."""
    import psycopg2

    s = cfg.stack
    return psycopg2.connect(
        host=s.postgres_host, port=s.postgres_port, user=s.postgres_user, dbname=dbname, **kw
    )


def databases(cfg: Config) -> tuple[str, str, str]:
    d = cfg.stack.databases
    return d.airflow, d.mlflow, d.optuna


def check_backing_services(cfg: Config) -> None:
    """The machine's PostgreSQL and Redis: the stack uses them, never starts or stops them."""
    import psycopg2
    import redis

    s = cfg.stack
    try:
        connect(cfg, connect_timeout=5).close()
    except psycopg2.OperationalError as exc:
        raise StartFailed(
            f"PostgreSQL at {s.postgres_host}:{s.postgres_port} (user {s.postgres_user}) is not "
            f"reachable (stack.postgres_*): {str(exc).strip()}"
        ) from exc
    try:
        redis.Redis(host=s.redis_host, port=s.redis_port, socket_connect_timeout=5).ping()
    except redis.RedisError as exc:
        raise StartFailed(
            f"Redis at {s.redis_host}:{s.redis_port} is not reachable (stack.redis_*): {exc}"
        ) from exc


def create_databases(cfg: Config) -> list[str]:
    """One database per store on the local PostgreSQL; existing ones are kept."""
    from psycopg2 import sql

    created = []
    with contextlib.closing(connect(cfg)) as conn:
        conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
        with conn.cursor() as cur:
            for name in databases(cfg):
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                    created.append(name)
    return created


def drop_databases(cfg: Config) -> None:
    """For throw-away stacks (tests, benchmarks): the stack must be down."""
    from psycopg2 import sql

    with contextlib.closing(connect(cfg)) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            for name in databases(cfg):
                drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                cur.execute(drop.format(sql.Identifier(name)))


def dag_registered(cfg: Config, dag_id: str) -> bool:
    with (
        contextlib.closing(connect(cfg, cfg.stack.databases.airflow)) as conn,
        conn.cursor() as cur,
    ):
        cur.execute("SELECT 1 FROM dag WHERE dag_id = %s", (dag_id,))
        return cur.fetchone() is not None
