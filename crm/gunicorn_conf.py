"""gunicorn settings for the API: ``gunicorn -c python:crm.gunicorn_conf 'crm.app:asgi_app()'``
(``crm serve`` passes it). Prometheus multiprocess mode and the access log live here.

* **Metrics across workers.** Each worker writes its metrics into files in
  ``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` sums them (see :mod:`crm.metrics`). Without the
  variable a private directory is created at start and removed at exit. At start, files of
  processes that no longer run (an earlier, killed server) are removed, so old counts never mix
  with new ones, while a process sharing the directory and still running (the relay started by
  ``crm serve``) keeps its own. When a worker exits, its live gauges (the pool gauges) are dropped
  (``child_exit``); its counters stay, as they should.
* **Access log.** The app writes its own JSON line per request (``crm.access``). uvicorn's access
  line (client address, path and query string: search terms, possibly names or e-mail addresses)
  is switched off.

The variable must be in the environment before ``prometheus_client`` is imported in a worker;
gunicorn loads the app in each worker after forking, so setting it in ``on_starting`` suffices.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

_FILE = re.compile(r"^[a-z_]+_(?P<pid>\d+)\.db$")
_created: list[str] = []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def prepare_multiproc_dir(path: str | None) -> str:
    """Create the metrics directory (or a private one when ``path`` is empty) and remove the files
    of processes that do not run any more; returns the directory."""
    if not path:
        path = tempfile.mkdtemp(prefix="crm-metrics-")
        _created.append(path)
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    for file in folder.glob("*.db"):
        match = _FILE.match(file.name)
        if match and not _alive(int(match.group("pid"))):
            file.unlink(missing_ok=True)
    return path


def on_starting(server) -> None:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = prepare_multiproc_dir(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def post_worker_init(worker) -> None:
    import logging

    # No uvicorn access line (it would carry the query string); crm.access logs every request.
    logging.getLogger("uvicorn.access").disabled = True


def child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    for path in _created:
        shutil.rmtree(path, ignore_errors=True)
