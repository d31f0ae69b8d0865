"""CPU time spent per request by the API workers, PostgreSQL and the load generator.

Throughput on a small shared machine depends on who else is running; CPU time per request does
much less, and it shows where the time goes. Read from /proc: a process's own time plus, for the
gunicorn master and the postmaster, the time of their children (live ones directly, exited ones —
pgbench's backends — through the parent's cutime/cstime once reaped). The load generator is
measured with getrusage(RUSAGE_CHILDREN) of this process.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")
SETTLE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class CpuSample:
    """Cumulative CPU seconds at one moment."""

    api: float
    database: float
    client: float
    machine_busy: float

    def __sub__(self, other: CpuSample) -> CpuSample:
        return CpuSample(self.api - other.api, self.database - other.database,
                         self.client - other.client, self.machine_busy - other.machine_busy)


@dataclass(frozen=True)
class CpuPerRequest:
    """Milliseconds of CPU per request (or transaction), and the share of the machine's busy time
    that went to processes outside the benchmark."""

    server_ms: float
    database_ms: float
    client_ms: float
    others_pct: float


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2:].split()  # fields from the 3rd on (state, ppid, ...)


def _own_and_reaped(pid: int) -> tuple[float, float, int]:
    """(utime+stime, cutime+cstime) in seconds, and the parent pid."""
    fields = _stat_fields(pid)
    own = int(fields[11]) + int(fields[12])
    reaped = int(fields[13]) + int(fields[14])
    return own / _TICK, reaped / _TICK, int(fields[1])


def _children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(_stat_fields(int(entry.name))[1]) == parent:
                    found.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return found


def _tree_cpu(parent: int) -> float:
    own, reaped, _ppid = _own_and_reaped(parent)
    total = own + reaped
    for child in _children(parent):
        try:
            total += _own_and_reaped(child)[0]
        except (OSError, ValueError, IndexError):
            continue  # exited between the listing and the read: counted once reaped
    return total


def _machine_busy() -> float:
    user, nice, system, _idle, _iowait, irq, softirq = (
        int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8])
    return (user + nice + system + irq + softirq) / _TICK


def _client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class CpuMeter:
    """Samples the CPU of the gunicorn master's tree and the postmaster's tree."""

    def __init__(self, api_pid: int, postmaster_pid: int) -> None:
        self.api_pid = api_pid
        self.postmaster_pid = postmaster_pid

    def sample(self) -> CpuSample:
        return CpuSample(_tree_cpu(self.api_pid), _tree_cpu(self.postmaster_pid), _client_cpu(), _machine_busy())

    def backends(self) -> int:
        return len(_children(self.postmaster_pid))

    def settle(self, backends: int) -> None:
        """Wait until the backends of a finished client have exited and been reaped."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while self.backends() > backends and time.monotonic() < deadline:
            time.sleep(0.05)


def per_request(delta: CpuSample, requests: int) -> CpuPerRequest:
    ours = delta.api + delta.database + delta.client
    others = max(0.0, delta.machine_busy - ours) / delta.machine_busy * 100 if delta.machine_busy > 0 else 0.0
    return CpuPerRequest(server_ms=delta.api / requests * 1000, database_ms=delta.database / requests * 1000,
                         client_ms=delta.client / requests * 1000, others_pct=others)


def postmaster_pid(pgdata: Path) -> int:
    return int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
