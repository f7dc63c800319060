"""The PostgreSQL server the journal tests run against (tests/postgres.py)."""

from __future__ import annotations

import psycopg

from tests.postgres import PostgresServer


def test_server_is_postgresql_15(postgres_server: PostgresServer) -> None:
    with psycopg.connect(postgres_server.url) as conn:
        row = conn.execute("SELECT version()").fetchone()
    assert row is not None
    assert "PostgreSQL 15" in row[0]
    assert postgres_server.url.endswith(f"@127.0.0.1:{postgres_server.port}/postgres")


def test_new_database_gives_each_test_its_own(postgres_server: PostgresServer) -> None:
    urls = [postgres_server.new_database(name) for name in ("db_a", "db_b")]
    assert urls[0] != urls[1]
    for url, value in zip(urls, ("a", "b"), strict=True):
        with psycopg.connect(url) as conn:
            conn.execute("CREATE TABLE t (v text)")
            conn.execute("INSERT INTO t VALUES (%s)", (value,))
    for url, value in zip(urls, ("a", "b"), strict=True):
        with psycopg.connect(url) as conn:
            name = conn.execute("SELECT current_database()").fetchone()
            rows = conn.execute("SELECT v FROM t").fetchall()
        assert name is not None and url.endswith("/" + name[0])
        assert rows == [(value,)]
