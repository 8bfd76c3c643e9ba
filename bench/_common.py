"""Shared by the benchmarks: machine description, interleaved timing, Markdown tables and result files.

Every benchmark prints a Markdown table and writes ``<name>.json`` and ``<name>.md`` (``<name>-quick.*`` for
``--quick``) into bench/results/ or ``--out``. This machine is shared and noisy, so timings are ratios of variants
run interleaved in one process, and each result records how loaded the machine was (``os.getloadavg()``).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

RESULTS = Path(__file__).resolve().parent / "results"


def load() -> list[float]:
    """1, 5 and 15 minute load averages, rounded."""
    return [round(value, 2) for value in os.getloadavg()]


def machine() -> dict:
    """What the numbers were measured on: CPUs, memory, Python and the TensorFlow stack."""
    from importlib.metadata import PackageNotFoundError, version

    packages = {}
    for name in ("tensorflow", "tf-keras", "tensorflow-model-optimization", "ai-edge-litert", "ipywidgets",
                 "anywidget", "bqplot", "playwright"):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    memory = None
    try:
        with open("/proc/meminfo") as meminfo:
            memory = round(int(meminfo.readline().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "memory_gib": memory, "python": platform.python_version(),
            "platform": platform.platform(), "packages": packages, "load_at_start": load()}


def cpu_seconds() -> float:
    """User + system CPU time of this process so far, all threads (less disturbed by other jobs than wall time)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def median(values) -> float:
    return float(statistics.median(values))


class Stopwatch:
    """``with Stopwatch() as watch: ...`` then ``watch.seconds``."""

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        return False


def table(headers: list[str], rows: list[list]) -> list[str]:
    """Markdown table lines."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join("" if cell is None else str(cell) for cell in row) + " |" for row in rows]
    return lines


def write(name: str, quick: bool, out: Path, result: dict, lines: list[str]) -> None:
    """Print the Markdown and write ``<name>[-quick].json`` and ``.md`` into ``out``."""
    result = {**result, "load_at_end": load(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    stem = f"{name}-quick" if quick else name
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    footer = ["", (f"Measured {result['date']} on {describe(result['machine'])}; load average (1/5/15 min) at start "
                  f"{result['machine']['load_at_start']}, at end {result['load_at_end']}.")]
    text = "\n".join([*lines, *footer]) + "\n"
    (out / f"{stem}.md").write_text(text)
    print(text, flush=True)


def describe(info: dict) -> str:
    packages = info["packages"]
    return (f"{info['cpus']} CPUs ({info['cpu']}), {info['memory_gib']} GiB, Python {info['python']}, "
            f"TF {packages['tensorflow']}, tfmot {packages['tensorflow-model-optimization']}, "
            f"LiteRT {packages['ai-edge-litert']}")
