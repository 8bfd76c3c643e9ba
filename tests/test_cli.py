"""The tfopt-widgets command end to end: the demo (the README's main job) and optimize for CI jobs."""

import json
import subprocess
import sys

import numpy as np
import pytest

import tfopt_widgets as tw
from tfopt_widgets.cli import main

TARGETS = ("float32", "cpu", "gpu", "edgetpu", "hexagon")


def test_demo_writes_files_and_prints_the_table(tmp_path):
    result = subprocess.run([sys.executable, "-m", "tfopt_widgets.cli", "demo", "--out", str(tmp_path), "--epochs",
                             "1"], capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads((tmp_path / "metrics.json").read_text())
    assert [row["run"].split()[0] for row in rows] == list(TARGETS)
    for row in rows:
        assert (tmp_path / row["file"]).stat().st_size == row["size"]
        assert row["accuracy"] > 0.85, row
        assert row["run"] in result.stdout
    baseline, *optimized = rows
    assert all(row["quantization"] == "int8" for row in optimized), "QAT models convert to int8 everywhere"
    assert all(row["gzip_size"] < baseline["gzip_size"] / 3 for row in optimized)
    assert tw.Plan.load(tmp_path / "plan.json")["dense"].scheme == "PCQAT"
    loaded = tw.TFLiteModel.load(tmp_path / "edgetpu.tflite")
    assert loaded.inputs[0].shape[0] == 1 and loaded.inputs[0].dtype == "int8"


@pytest.fixture(scope="module")
def saved(tmp_path_factory, digits):
    folder = tmp_path_factory.mktemp("cli")
    model, (x, y), (x_test, y_test) = digits
    model.save(folder / "model.keras")
    np.savez(folder / "data.npz", x=x, y=y, x_test=x_test, y_test=y_test)
    tw.Plan().prune("dense", sparsity=0.5).save(folder / "plan.json")
    return folder


def test_optimize_a_saved_model_for_a_target(saved, capsys):
    out = saved / "out"
    code = main(["optimize", str(saved / "model.keras"), "--plan", str(saved / "plan.json"), "--target", "hexagon",
                 "--data", str(saved / "data.npz"), "--epochs", "1", "--out", str(out)])
    assert code == 0
    rows = json.loads((out / "metrics.json").read_text())
    assert [row["target"] for row in rows] == ["float32", "hexagon"]
    assert rows[1]["quantization"] == "int8" and rows[1]["accuracy"] > 0.85
    tflite = tw.TFLiteModel.load(out / "hexagon.tflite")
    dense = [t for t in tflite.tensors if t.constant and t.shape == (64, 512)]
    assert len(dense) == 1 and dense[0].dtype == "int8"
    assert np.mean(tflite.tensor_data(dense[0].index) == 0) >= 0.5, "the pruned kernel made it to the file"
    assert "hexagon" in capsys.readouterr().out


def test_inspect_prints_the_layer_table(saved, capsys):
    assert main(["inspect", str(saved / "model.keras")]) == 0
    assert "conv2" in capsys.readouterr().out


@pytest.mark.parametrize("change, words", [
    (lambda f: ["--plan", str(f / "missing.json")], "missing.json does not exist"),
    (lambda f: ["--target", "tpu"], "Unknown target"),
    (lambda f: ["--plan", str(f / "bad-plan.json")], "newer than this tfopt-widgets"),
    (lambda f: ["--data", str(f / "bad-data.npz")], "no array 'y'"),
])
def test_errors_are_one_line_and_exit_2(saved, capsys, change, words):
    (saved / "bad-plan.json").write_text('{"format": "tfopt-widgets/plan", "version": 7, "layers": {}}')
    np.savez(saved / "bad-data.npz", x=np.zeros((4, 8, 8, 1)))
    args = {"--plan": str(saved / "plan.json"), "--target": "cpu", "--data": str(saved / "data.npz")}
    override = change(saved)
    args[override[0]] = override[1]
    argv = ["optimize", str(saved / "model.keras"), *[item for pair in args.items() for item in pair],
            "--epochs", "1", "--out", str(saved / "err")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and err.count("\n") == 1


# What TensorFlow, tfmot and LiteRT print on their own and no user can act on: TensorFlow's start-up lines (absl
# writes them whatever TF_CPP_MIN_LOG_LEVEL says), tfmot's root-logger note under PCQAT, LiteRT's delegate banner.
NOISE = ("oneDNN", "cuInit", "cuda", "CUDA", "absl::InitializeLog", "WARNING:root", "does not contain zero weights",
         "XNNPACK", "I0000", "E0000", "W0000")


def test_output_says_only_what_the_user_should_act_on(saved, tmp_path):
    # conv2 is clustered but not pruned while dense is pruned and clustered: the PCQAT scheme makes tfmot log
    # "Input layer does not contain zero weights, so apply CQAT instead." for conv2, and clustering runs int32 ops.
    plan = (tw.Plan().quantize("conv1", "conv2", "dense", "classifier").cluster("conv2", clusters=8)
            .prune("dense", sparsity=0.5).cluster("dense", clusters=16))
    plan.save(tmp_path / "plan.json")
    result = subprocess.run([sys.executable, "-m", "tfopt_widgets.cli", "optimize", str(saved / "model.keras"),
                             "--plan", str(tmp_path / "plan.json"), "--target", "edgetpu", "--data",
                             str(saved / "data.npz"), "--epochs", "1", "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    for words in NOISE:
        assert words not in result.stdout + result.stderr, (words, result.stderr)
    # stderr holds the progress, one line per stage with its time; stdout the results table.
    lines = result.stderr.splitlines()
    assert [line.split(":")[0].split(",")[0] for line in lines] == [
        "float32 baseline", "pruning", "clustering", "quantization-aware training",
        "converting to TensorFlow Lite (calibration included)", "measuring the TFLite file with LiteRT on this CPU"]
    assert "clustering: fine-tuning, 1 epoch, " in lines[2] and all(line.endswith(" s") for line in lines)
    assert "edgetpu" in result.stdout and sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "edgetpu.tflite", "float32.tflite", "metrics.json", "plan.json"], "whole files only, no leftovers"
