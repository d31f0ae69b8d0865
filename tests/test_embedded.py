"""Real start/stop/kill cycles of the embedded PostgreSQL wrapper (no mocks)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from db.embedded import BIN_DIR, EmbeddedPostgres, EmbeddedPostgresError, bin_path

# pytest's tmp_path has 0700 parents the server user cannot traverse: use mkdtemp() under /tmp.
Factory = Callable[..., EmbeddedPostgres]


@pytest.fixture
def make_pg() -> Iterator[Factory]:
    servers: list[EmbeddedPostgres] = []
    dirs: list[str] = []

    def factory(data_dir: Path | str | None = None, **kwargs: object) -> EmbeddedPostgres:
        if data_dir is None:
            data_dir = tempfile.mkdtemp(prefix="crm-test-pg-")
            dirs.append(str(data_dir))
        pg = EmbeddedPostgres(data_dir, fast=True, **kwargs)  # type: ignore[arg-type]
        servers.append(pg)
        return pg

    yield factory
    for pg in servers:
        try:
            pg.stop()
        except EmbeddedPostgresError:
            pass
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


def _postmaster_pid(pg: EmbeddedPostgres) -> int:
    return int((pg.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _wait_dead(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        assert time.monotonic() < deadline, f"process {pid} still alive"
        time.sleep(0.05)


def _scalar(dsn: str, query: str) -> object:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(query).fetchone()  # type: ignore[arg-type]
        assert row is not None
        return row[0]


def test_bin_path() -> None:
    initdb = Path(bin_path("initdb"))
    assert initdb.parent == BIN_DIR
    assert os.access(initdb, os.X_OK)
    with pytest.raises(FileNotFoundError):
        bin_path("no-such-binary")


def test_start_connect_and_stop(make_pg: Factory) -> None:
    pg = make_pg()
    with pg:
        dsn = pg.dsn()
        assert re.fullmatch(rf"postgresql://crm@127\.0\.0\.1:{pg.port}/postgres", dsn)
        assert pg.dsn("other db") == f"postgresql://crm@127.0.0.1:{pg.port}/other%20db"
        assert pg.is_running()
        with psycopg.connect(dsn) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
            assert conn.execute("show server_encoding").fetchone() == ("UTF8",)
            collation = "select datcollate from pg_database where datname = current_database()"
            assert conn.execute(collation).fetchone() == ("C.UTF-8",)
            assert conn.execute("show max_connections").fetchone() == ("200",)
            assert conn.execute("show fsync").fetchone() == ("off",)
            assert conn.execute("show listen_addresses").fetchone() == ("127.0.0.1",)
            conn.execute("create extension pg_stat_statements")
            conn.execute("select 42 as answer")
            calls = conn.execute("select count(*) from pg_stat_statements").fetchone()
            assert calls is not None and calls[0] > 0
        if os.geteuid() == 0:
            assert pg.pgdata.stat().st_uid == pg._system_account()[0]  # type: ignore[index]
        assert stat.S_IMODE(pg.pgdata.stat().st_mode) == 0o700
    assert not pg.is_running()
    pg.stop()  # idempotent
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn, connect_timeout=2)


def test_restart_keeps_data_and_port(make_pg: Factory) -> None:
    pg = make_pg()
    dsn = pg.start()
    with psycopg.connect(dsn) as conn:
        conn.execute("create table kept (id int)")
        conn.execute("insert into kept values (7)")
    pg.stop()
    assert not pg.is_running()

    again = make_pg(pg.data_dir)
    assert again.port == pg.port  # the port of the previous run is reused
    assert again.start() == dsn
    assert _scalar(dsn, "select id from kept") == 7


def test_start_after_kill_9(make_pg: Factory) -> None:
    pg = make_pg()
    dsn = pg.start()
    with psycopg.connect(dsn) as conn:
        conn.execute("set synchronous_commit = on")  # fast mode may otherwise lose the last commits
        conn.execute("create table survivor (id int)")
        conn.execute("insert into survivor values (1)")
    pid = _postmaster_pid(pg)
    os.kill(pid, signal.SIGKILL)
    _wait_dead(pid)
    assert not pg.is_running()  # also while the killed postmaster is an unreaped zombie
    assert (pg.pgdata / "postmaster.pid").exists()  # the stale pid file a plain pg_ctl start trips on

    again = make_pg(pg.data_dir)
    assert again.start() == dsn
    assert again.is_running()
    assert _postmaster_pid(again) != pid
    assert _scalar(dsn, "select id from survivor") == 1


def test_start_stops_leftover_running_server(make_pg: Factory) -> None:
    first = make_pg()
    dsn = first.start()
    old_pid = _postmaster_pid(first)

    second = make_pg(first.data_dir)  # e.g. the launcher was killed but its server survived
    assert second.start() == dsn
    _wait_dead(old_pid)
    assert _postmaster_pid(second) != old_pid
    assert _scalar(dsn, "select 1") == 1


def test_create_and_drop_database_from_template(make_pg: Factory) -> None:
    pg = make_pg()
    pg.start()
    pg.create_database("tpl-crm")
    with psycopg.connect(pg.dsn("tpl-crm")) as conn:
        conn.execute("create table customers (name text)")
        conn.execute("insert into customers values ('Ada')")
    pg.create_database('clone "1"', template="tpl-crm")
    assert _scalar(pg.dsn('clone "1"'), "select name from customers") == "Ada"

    with psycopg.connect(pg.dsn('clone "1"')):  # dropping works even with open sessions
        pg.drop_database('clone "1"')
    pg.drop_database("tpl-crm")
    pg.drop_database("tpl-crm")  # already gone: no error
    names = _scalar(pg.dsn(), "select array_agg(datname::text) from pg_database")
    assert isinstance(names, list)
    assert "tpl-crm" not in names and 'clone "1"' not in names
    with pytest.raises(psycopg.errors.DuplicateDatabase):
        pg.create_database("postgres")


def test_port_taken_by_other_process_fails_clearly(make_pg: Factory) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        pg = make_pg(port=port, port_env="CRM_DB_PORT")
        with pytest.raises(EmbeddedPostgresError, match=rf"port {port}\b.*CRM_DB_PORT"):
            pg.start()
    assert not pg.is_running()


@pytest.mark.skipif(os.geteuid() != 0, reason="parent folders only matter when running as root")
def test_untraversable_parent_is_reported_not_chmodded() -> None:
    parent = Path(tempfile.mkdtemp(prefix="crm-test-closed-"))  # mode 0700, owned by root
    try:
        pg = EmbeddedPostgres(parent / "data", fast=True)
        with pytest.raises(EmbeddedPostgresError, match=re.escape(str(parent))):
            pg.start()
        assert stat.S_IMODE(parent.stat().st_mode) == 0o700
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def test_long_data_dir_uses_short_socket_dir(make_pg: Factory) -> None:
    base = tempfile.mkdtemp(prefix="crm-test-pg-")
    os.chmod(base, 0o711)
    try:
        pg = make_pg(Path(base) / ("d" * 90))
        pg.start()
        assert not pg.socket_dir.is_relative_to(pg.data_dir)
        assert len(os.fsencode(pg.socket_dir / f".s.PGSQL.{pg.port}")) < 100
        with psycopg.connect(host=str(pg.socket_dir), port=pg.port, user="crm", dbname="postgres") as conn:
            assert conn.execute("select 1").fetchone() == (1,)
        socket_dir = pg.socket_dir
        pg.stop()
        assert not socket_dir.exists()
    finally:
        shutil.rmtree(base, ignore_errors=True)
