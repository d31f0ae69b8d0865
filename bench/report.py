"""The Markdown report: command, machine facts, the throughput and latency table (one row per case and
concurrency) and the CPU-per-request table."""

from __future__ import annotations

import os
import platform
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bench.cpu import CpuPerRequest
from bench.stats import Measurement

RESULTS_FILE = Path(__file__).resolve().parent / "results" / "latest.md"

HEADER = (
    "| case | connections | API req/s | API p50 | p95 | p99 (ms) | SQL tps | SQL p50 | p95 | p99 (ms) "
    "| API/SQL throughput ratio |\n"
    "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n"
)

CPU_HEADER = (
    "| case | connections | API run: gunicorn | PostgreSQL | wrk | other processes "
    "| SQL run: PostgreSQL | pgbench | other processes |\n"
    "|---|--:|--:|--:|--:|--:|--:|--:|--:|\n"
)


@dataclass(frozen=True)
class Row:
    case: str
    connections: int
    api: Measurement
    sql: Measurement
    api_cpu: CpuPerRequest
    sql_cpu: CpuPerRequest


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def nproc() -> int:
    return len(os.sched_getaffinity(0))


def _ms(value: float) -> str:
    return f"{value:.2f}"


def _row(row: Row) -> str:
    cells = [
        row.case, str(row.connections),
        f"{row.api.rate:,.0f}", _ms(row.api.p50_ms), _ms(row.api.p95_ms), _ms(row.api.p99_ms),
        f"{row.sql.rate:,.0f}", _ms(row.sql.p50_ms), _ms(row.sql.p95_ms), _ms(row.sql.p99_ms),
        f"{row.api.rate / row.sql.rate:.2f}",
    ]
    return "| " + " | ".join(cells) + " |\n"


def _cpu_row(row: Row) -> str:
    api, sql = row.api_cpu, row.sql_cpu
    cells = [
        row.case, str(row.connections),
        _ms(api.server_ms), _ms(api.database_ms), _ms(api.client_ms), f"{api.others_pct:.0f} %",
        _ms(sql.database_ms), _ms(sql.client_ms), f"{sql.others_pct:.0f} %",
    ]
    return "| " + " | ".join(cells) + " |\n"


def table(rows: Iterable[Row]) -> str:
    return HEADER + "".join(_row(row) for row in rows)


def cpu_table(rows: Iterable[Row]) -> str:
    return CPU_HEADER + "".join(_cpu_row(row) for row in rows)


def document(command: str, facts: dict[str, str], rows: list[Row]) -> str:
    lines = [f"Command: `{command}`\n\n"]
    lines += [f"- {key}: {value}\n" for key, value in facts.items()]
    return "".join([
        *lines, "\n", table(rows),
        "\nCPU time per request or transaction (ms), and the share of the busy CPU time that went to "
        "processes outside the benchmark:\n\n",
        cpu_table(rows),
    ])


def write(text: str) -> Path:
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_FILE.write_text(text)
    return RESULTS_FILE
