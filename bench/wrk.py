"""The API side: wrk against gunicorn, with bench/wrk.lua adding the bearer token and rotating ids."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from bench.stats import BenchError, Measurement

LUA_SCRIPT = Path(__file__).resolve().parent / "wrk.lua"
THREADS = 2
_MARKER = "BENCH_RESULT "
_ERROR_KEYS = ("connect_errors", "read_errors", "write_errors", "timeouts", "status_errors")


def ensure_wrk() -> str:
    """Path of ``wrk``; installs the Debian package quietly when it is missing and we may."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise BenchError("wrk is not installed: install the Debian package 'wrk' (apt-get install wrk)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk"]
    result = subprocess.run(install, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:  # stale package lists: refresh once and retry
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True, env=env, check=False)
        result = subprocess.run(install, capture_output=True, text=True, env=env, check=False)
    found = shutil.which("wrk")
    if not found:
        raise BenchError(f"could not install wrk with apt-get (exit {result.returncode}):\n{result.stderr[-2000:]}")
    return found


def version(wrk: str) -> str:
    result = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
    first = (result.stdout or result.stderr).strip().splitlines()
    return first[0].split(" [")[0] if first else "wrk"


def _parse(output: str) -> dict[str, float]:
    for line in output.splitlines():
        if line.startswith(_MARKER):
            return json.loads(line[len(_MARKER):])
    raise BenchError(f"wrk printed no result line:\n{output[-2000:]}")


def run(wrk: str, url: str, token: str, connections: int, seconds: int, ids_file: Path | None,
        script: Path = LUA_SCRIPT, extra_env: dict[str, str] | None = None) -> Measurement:
    """Load ``url`` for ``seconds`` with ``script`` (its environment: the token, the ids file and
    ``extra_env``); any socket error or non-2xx/3xx answer fails the bench."""
    env = {**os.environ, "BENCH_TOKEN": token, "BENCH_IDS_FILE": str(ids_file or ""), "BENCH_THREADS": str(THREADS),
           **(extra_env or {})}
    cmd = [wrk, f"--threads={THREADS}", f"--connections={connections}", f"--duration={seconds}s",
           "--timeout=10s", "--latency", f"--script={script}", url]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise BenchError(f"wrk failed (exit {result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    data = _parse(result.stdout)
    errors = {key: int(data[key]) for key in _ERROR_KEYS if data[key]}
    if errors:
        raise BenchError(f"wrk against {url} with {connections} connections saw errors {errors}:\n{result.stdout}")
    return Measurement(rate=data["requests"] / (data["duration_us"] / 1e6), requests=int(data["requests"]),
                       p50_ms=data["p50_us"] / 1000, p95_ms=data["p95_us"] / 1000, p99_ms=data["p99_us"] / 1000)
