"""Smoke tests of the benchmarks in bench/: each script's --quick mode runs end to end and writes its results.

The full runs (minutes) are not part of the test suite; their latest results are committed under bench/results/.
The scripts run in this process (one TensorFlow import), scale.py in its own (Playwright) and write into a temporary folder.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"

pytestmark = pytest.mark.slow


def run_quick(name: str, out: Path, *, own_process: bool = False) -> dict:
    if own_process:
        # Playwright's sync API refuses to start inside a running asyncio loop, which the browser tests' session
        # fixture leaves in this process: the render benchmark gets a process of its own.
        result = subprocess.run([sys.executable, str(BENCH / f"{name}.py"), "--quick", "--out", str(out)],
                                capture_output=True, text=True, timeout=900, check=False)
        assert result.returncode == 0, result.stderr[-3000:]
    else:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(BENCH))
        try:
            spec.loader.exec_module(module)
            assert module.main(["--quick", "--out", str(out)]) == 0
        finally:
            sys.path.remove(str(BENCH))
    assert (out / f"{name}-quick.md").read_text().startswith("# ")
    return json.loads((out / f"{name}-quick.json").read_text())


def test_overhead_quick_compares_tw_with_handwritten_tfmot(tmp_path):
    result = run_quick("overhead", tmp_path)
    (case,) = result["cases"]
    assert case["tw_median_s"] > 0 and case["hand_median_s"] > 0 and case["ratio"] > 0
    # The same plan by both routes: the same file, whatever the timing.
    assert case["identical"], case["checks"]
    assert case["details"]["sparsity tw/hand"]["dense"][0] == pytest.approx(0.8, abs=0.005)
    assert len(result["machine"]["load_at_start"]) == 3


def test_compression_quick_measures_files_against_float32(tmp_path):
    result = run_quick("compression", tmp_path)
    baseline, *rows = result["rows"]
    assert baseline["target"] == "float32" and baseline["x_gzip"] == 1.0
    assert {(r["technique"], r["target"]) for r in rows} == {("PTQ int8", "edgetpu"), ("prune", "edgetpu")}
    for row in rows:
        assert row["mode"] == "int8" and row["gzip_size"] < baseline["gzip_size"]
        assert 0 <= row["accuracy"] <= 1 and row["latency_ms"] > 0
    assert result["best"] is None or result["best"]["drop_points"] <= 1.0


def test_scale_quick_measures_inspect_studio_and_state(tmp_path):
    result = run_quick("scale", tmp_path, own_process=True)
    (model,) = result["models"]
    assert model["layers"] > 100 and model["inspect_s"] > 0 and model["studio_s"] > 0
    assert 10_000 < model["state_bytes"] < 1_000_000
    render = result["render"]
    assert "skipped" in render or render["layer table"]["median_s"] > 0
