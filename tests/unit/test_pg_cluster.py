"""The test cluster itself: a fresh database per test that a SQLAlchemy engine reaches, and a restart."""

from __future__ import annotations

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL

from tests.pg import Cluster


def test_each_test_gets_an_empty_database_it_can_write(pg_url: URL) -> None:
    engine = create_engine(pg_url)
    try:
        with engine.begin() as conn:
            assert conn.execute(text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")).scalar() == 0
            conn.execute(text("CREATE TABLE t (x int)"))
            conn.execute(text("INSERT INTO t VALUES (1)"))
        with engine.connect() as conn:
            assert conn.execute(text("SELECT x FROM t")).scalar() == 1
    finally:
        engine.dispose()


def test_the_cluster_restarts_on_the_same_port_keeping_data(pg_cluster: Cluster, pg_url: URL) -> None:
    engine = create_engine(pg_url, pool_pre_ping=True)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE kept (x int)"))
            conn.execute(text("INSERT INTO kept VALUES (7)"))
        pg_cluster.stop()
        pg_cluster.start()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT x FROM kept")).scalar() == 7
    finally:
        engine.dispose()
