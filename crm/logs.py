"""Log lines without personal data.

The API's and the relay's log lines are JSON objects, one per line (``crm.access``: one per request,
see :mod:`crm.context`; ``crm.relay.delivery``: one per webhook delivery attempt, see
:mod:`crm.relay`). What they never contain: request or event bodies, query strings, client
addresses, webhook URLs, and exception messages — database errors quote the row that failed
(``Failing row contains (...)``, ``Key (email)=(...)``), validation errors the value sent, HTTP
client errors the URL. Errors are logged by :func:`describe`: the exception's class, its SQLSTATE
and constraint for database errors, and the stack (file, line, function, code), which finds the
bug without repeating the data.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from datetime import UTC, datetime
from typing import Any


def now() -> str:
    """RFC 3339 UTC timestamp with milliseconds, as every JSON line carries it (``ts``)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def json_line(event: str, **fields: Any) -> str:
    return json.dumps({"ts": now(), "event": event, **fields}, default=str)


def describe(exc: BaseException) -> str:
    """An exception for the log, without its message: class, SQLSTATE/constraint, stack."""
    parts = [f"{type(exc).__module__}.{type(exc).__qualname__}"]
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate:
        parts.append(f"sqlstate={sqlstate}")
    diag = getattr(exc, "diag", None)
    constraint = getattr(diag, "constraint_name", None) if diag is not None else None
    if constraint:
        parts.append(f"constraint={constraint}")
    stack = "".join(traceback.format_tb(exc.__traceback__)).rstrip()
    return " ".join(parts) + ("\n" + stack if stack else "")


def json_lines_to_stderr(name: str) -> logging.Logger:
    """Give logger ``name`` its own handler writing the bare message (a JSON object) to stderr,
    so a process whose root handler prefixes time and level still writes one JSON line each."""
    logger = logging.getLogger(name)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger
