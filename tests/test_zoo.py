"""The conformance matrix (bench/zoo.py) on a CI-sized subset, and its harness.

Tiny architectures (a digits-sized CNN and every non-classifier shape) go through PCQAT and an Edge TPU conversion,
MobileNetV2 (tf_keras and Keras 3) and MobileNetV3Small through QAT and an Edge TPU conversion, each in its own worker process as the full
matrix runs them. A cell passes when it is ok, or ``no`` with a limitation listed in :data:`KNOWN_LIMITATIONS` (the
library reports it with its own error type and message). A crash fails with its type, message and traceback; so
does an unlisted ``no`` and a timeout. Timings are never checked. The harness tests (cell vocabulary, time limit,
reports) run no TensorFlow."""

from __future__ import annotations

import json

import pytest

# name -> the steps it takes. Tiny models go through PCQAT (the 3 largest layers that allow it pruned and clustered,
# every layer quantized) and an Edge TPU conversion of its result; MobileNetV2-0.35 (tf_keras and Keras 3) and
# MobileNetV3Small-0.75 (hard-swish, Rescaling) at 32x32 through QAT: their PCQAT takes minutes on 2 cores (the full
# matrix covers it).
TINY = ("digits_cnn", "text_cnn_lstm", "text_bigru", "unet", "two_in_two_out", "regression", "autoencoder")
PCQAT_STEPS = ("inspect", "pcqat", "convert_edgetpu")
MOBILENETS = ("mobilenet_v2", "mobilenet_v2_k3", "mobilenet_v3_small")
QAT_STEPS = ("inspect", "qat", "convert_edgetpu")
TIMEOUT_S = 240  # per architecture; the whole file takes about 3-4 minutes on 2 busy cores

# (architecture, step) -> a phrase of the library's own message for a limitation it documents.
KNOWN_LIMITATIONS: dict[tuple[str, str], str] = {}


@pytest.fixture(scope="module")
def matrix(zoo, tmp_path_factory):
    """zoo.json of the CI subset: every architecture in its own worker process, two at a time."""
    records = {}
    for names, steps in ((TINY, PCQAT_STEPS), (MOBILENETS, QAT_STEPS)):
        out = tmp_path_factory.mktemp("zoo")
        assert zoo.main(["--only", ",".join(names), "--steps", ",".join(steps), "--timeout", str(TIMEOUT_S),
                         "--jobs", "2", "--out", str(out)]) == 0
        assert (out / "zoo.md").read_text().startswith("# Conformance matrix")
        for record in json.loads((out / "zoo.json").read_text())["architectures"]:
            records[record["name"]] = {**record, "selected": steps}
    return records


@pytest.mark.slow
@pytest.mark.parametrize("name", TINY + MOBILENETS)
def test_every_step_works_or_is_a_documented_limitation(zoo, matrix, name):
    record = matrix[name]
    assert record["build"]["status"] == "ok", f"{name} could not be built: {zoo.message(record['build'])}"
    problems = []
    for step in record["selected"]:
        cell = record["cells"][step]
        known = KNOWN_LIMITATIONS.get((name, step))
        if cell["status"] == "ok" or (cell["status"] == "no" and known and known in cell["reason"]):
            continue
        if cell["status"] == "no":
            hint = (" (listed in KNOWN_LIMITATIONS, but with another message)" if known else
                    " (not a documented limitation: fix it, or add it to KNOWN_LIMITATIONS if the library documents it)")
            problems.append(f"{name} / {step}: no{hint}: {zoo.message(cell)}")
        else:
            problems.append(f"{name} / {step}: {cell['status']}: {zoo.message(cell)}")
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)
    optimized = "pcqat" if "pcqat" in record["selected"] else "qat"
    expected_stages = ["prune", "cluster", "quantize"] if optimized == "pcqat" else ["quantize"]
    assert record["cells"][optimized]["numbers"]["stages"] == expected_stages
    if record["cells"]["convert_edgetpu"]["status"] == "ok":
        assert record["cells"]["convert_edgetpu"]["numbers"]["source"] == optimized


# ---------------------------------------------------------------------------------------------------------------
# The harness itself (no TensorFlow)

def test_exceptions_become_cells_of_the_documented_vocabulary(zoo):
    import tfopt_widgets as tw

    def raised(error):
        try:
            raise error
        except Exception as caught:  # noqa: BLE001
            return zoo.classify(caught)

    refused = raised(tw.PlanError("Cannot cluster layer 'bn': no weights.", layer="bn"))
    assert refused == {"status": "no", "error_type": "PlanError", "reason": "Cannot cluster layer 'bn': no weights."}
    assert raised(zoo.Limitation("No layer of the model supports prune"))["status"] == "no"
    assert raised(zoo.Skip("large model")) == {"status": "skipped", "reason": "large model"}

    crash = raised(KeyError("conv1"))
    assert crash["status"] == "crash" and crash["error"]["type"] == "KeyError"
    assert crash["error"]["message"] == "'conv1'" and "in raised" in crash["error"]["traceback"][-1]

    try:
        try:
            raise ValueError("Found unexpected losses")
        except ValueError as inner:
            raise tw.ModelError(f"Fine-tuning failed: {inner}") from inner
    except tw.Error as error:
        wrapped = zoo.classify(error)
    assert wrapped["status"] == "no" and wrapped["wraps"] == "ValueError"
    assert zoo.cell_text({**wrapped, "seconds": 1.5}) == "no* 1.5s"


def test_an_architecture_over_its_time_limit_is_killed_and_its_steps_time_out(zoo, tmp_path):
    # Two seconds do not even import TensorFlow: the worker is killed while building the model.
    record = zoo.run_architecture("digits_cnn", ["inspect", "qat"], timeout=2, logs=tmp_path)
    assert record["timed_out"] and record["build"]["status"] == "timeout"
    assert {step: cell["status"] for step, cell in record["cells"].items() if cell["status"] != "skipped"} == \
        {"inspect": "timeout", "qat": "timeout"}
    assert record["cells"]["pcqat"]["reason"] == "not selected (--steps)"
    assert "2 s limit" in record["cells"]["inspect"]["reason"]


def test_reports_list_every_cell_that_is_not_ok(zoo):
    ok = {"status": "ok", "seconds": 2.0, "numbers": {}}
    cells = {step: {**ok, "numbers": {"size": 12_000, "op_share": 1.0}} if step.startswith("convert_") else dict(ok)
             for step in zoo.STEPS}
    cells["convert_edgetpu"]["numbers"]["op_share"] = 0.5
    cells["pcqat"] = {"status": "crash", "seconds": 3.0,
                      "error": {"type": "KeyError", "message": "'stem/conv'", "traceback": ["optimization.py:1 in x"]}}
    cells["sensitivity"] = {"status": "no", "seconds": 0.1, "error_type": "DataError", "reason": "Too few samples."}
    cells["to_python"] = {"status": "skipped", "seconds": None, "reason": "large model"}
    record = {"name": "convnext_tiny", "title": "ConvNeXtTiny, 32x32", "keras": 2, "seconds": 60.0, "exit_status": 0,
              "timed_out": False, "build": {"status": "ok", "seconds": 4.0, "params": 1000, "layers": 10},
              "cells": cells}
    result = {"timeout_s": 600, "architectures": [record], "run_seconds": 61.0, "date": "2026-01-01 00:00 UTC",
              "machine": {"packages": {"tensorflow": "2.21.0", "tensorflow-model-optimization": "0.8.1"}}}
    text = "\n".join(zoo.markdown(result))
    assert "| convnext_tiny | ok 2.0s | ok 2.0s | ok 2.0s | ok 2.0s | ok 2.0s | **crash** 3.0s |" in text
    assert "- **convnext_tiny / pcqat**: crash: KeyError: 'stem/conv'" in text
    assert "- **convnext_tiny / sensitivity**: no: DataError: Too few samples." in text
    assert "- **convnext_tiny / to_python**: skipped: large model" in text
    assert "cells ok: **10 / 12** run" in text and "crashes: **1**" in text
    readme = zoo.readme_table(result)
    assert readme.startswith("## Supported models") and "| ConvNeXtTiny, 32x32 | ok |" in readme
    assert "| ok | ok (50%) | ok |" in readme  # the Edge TPU file: half of its ops on the chip
    assert "| 12 KB, 50% |" in text
    assert "fails [^zoo1]" in readme and "[^zoo1]: Not yet supported: KeyError: 'stem/conv'" in readme
