"""tw.convert in a worker process, so that Cancel stops a conversion (and its int8 calibration) at any moment.

TensorFlow's converter runs in C++ for seconds to minutes (MLIR passes, calibration, quantization) and cannot be
interrupted from Python: a thread would run on after a cancel, its stderr capture fighting the next run's. A worker
process can be killed. It is started with the same Python (a fresh interpreter, never a fork of a TensorFlow
runtime), loads TensorFlow once, and serves one conversion after another until it is killed or the kernel exits.

>>> worker = shared_worker()
>>> tfl = worker.convert(model, "edgetpu", representative_data=x_train, heartbeat=check_cancel)

``heartbeat()`` is called about every 0.2 s while the worker converts; whatever it raises (``tw.Cancelled``) kills
the worker and is raised here; the next conversion starts a new worker. The model goes across as its Keras config
and weights, and is rebuilt there with tfmot's quantize_scope and the Keras application layers as custom objects;
the file comes back as bytes with the conversion's ``tw.ModelNotice`` messages, and an error of the conversion
comes back as the same error. Nothing is written to disk. A model whose rebuilt copy does not compute what it
computes here (a custom layer the worker cannot import) is converted in this process instead
(:attr:`ConversionWorker.in_process` says why).
"""

from __future__ import annotations

import atexit
import io
import itertools
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings
from pathlib import Path

from ..errors import ConversionError, Error
from ..model.porting import ModelNotice
from ..runtime.tflite import CALIBRATION_SAMPLES
from .file import TFLiteModel

__all__ = ["ConversionWorker", "shared_worker"]

HEARTBEAT_S = 0.2
# How long a killed worker may take to exit before kill() is sent again (SIGKILL cannot be refused: this is slack).
_EXIT_WAIT_S = 1.0


class ConversionWorker:
    """One worker process for tw.convert; started on first use (or by :meth:`start`), killed by a cancel.

    ``started`` counts the processes started, ``in_process`` lists why a conversion ran in this process instead
    (newest last), and ``last_wall_s`` is what the last conversion took, start-up of a new process included.
    """

    def __init__(self):
        self._process: subprocess.Popen | None = None
        self._log = None  # the worker's stderr (C++ logs), read when it dies
        self._lock = threading.Lock()
        self.started = 0
        self.in_process: list[str] = []
        self.last_wall_s = 0.0

    # -- the process ----------------------------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> ConversionWorker:
        """Start the process now (it loads TensorFlow in the background); a conversion would start it anyway."""
        if not self.alive:
            self._discard()
            package = str(Path(__file__).resolve().parents[2])
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package, os.environ.get("PYTHONPATH")])),
                   "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
            self._log = tempfile.TemporaryFile()  # noqa: SIM115 -- lives as long as the process; _discard closes it
            self._process = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                                             stdout=subprocess.PIPE, stderr=self._log, env=env)
            self.started += 1
        return self

    def close(self) -> None:
        """Kill the process (if any); the next conversion starts a new one."""
        self._discard()

    def _discard(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            try:
                process.wait(_EXIT_WAIT_S)
            except subprocess.TimeoutExpired:
                process.kill()
        if process is not None:
            for stream in (process.stdin, process.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
        if self._log is not None and process is not None:
            self._log.close()
            self._log = None

    def _log_tail(self, limit: int = 1500) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-limit:].strip()

    # -- a conversion -------------------------------------------------------------------------------------------
    def convert(self, model, target="cpu", representative_data=None, quantization: str | None = None, *,
                int8_io: bool | None = None, calibration_samples: int = CALIBRATION_SAMPLES, plan=None,
                keep_float=(), heartbeat=None) -> TFLiteModel:
        """``tw.convert(model, target, ...)`` in the worker: the same file, notices and errors.

        ``heartbeat()`` is called about every 0.2 s; what it raises kills the worker and is raised. The file's
        ``float_reference`` (what ``layer_errors`` compares with) is made here when first needed, from the model
        as given, unless the conversion made it already.
        """
        from ..model.stack import keras
        from ..targets import get_target
        from .conversion import convert
        from .converter import prepared_model, representative_samples
        from .precision import float_reference

        started = time.perf_counter()
        if plan is None and not isinstance(model, keras.Model):
            plan = getattr(model, "plan", None)  # tw.optimize's result carries its plan, as for tw.convert
        keras_model = prepared_model(model)  # a Keras 3 model is rebuilt here, and says so here
        target = get_target(target)
        samples = None
        if representative_data is not None:
            samples = representative_samples(keras_model, representative_data, calibration_samples)
        arguments = {"quantization": quantization, "int8_io": int8_io, "plan": plan, "keep_float": list(keep_float)}
        job = _job(keras_model, target.name, samples, arguments)
        if not isinstance(job, str):
            try:
                job = _dumps(job)
            except Exception as error:  # noqa: BLE001 -- something in a custom config or plan does not pickle
                job = f"the conversion's settings do not pickle ({type(error).__name__}: {error})"
        if isinstance(job, str):  # the model cannot cross: convert it here
            self.in_process.append(job)
            return convert(keras_model, target, samples, calibration_samples=_count(samples), **arguments)
        with self._lock:
            reply = self._ask(job, heartbeat)
        self.last_wall_s = time.perf_counter() - started
        kind = reply[0]
        if kind == "done":
            content, mode, origins, reference, notices = reply[1:]
            for notice in notices:
                warnings.warn(notice, ModelNotice, stacklevel=2)
            return TFLiteModel(content, target=target.name, quantization=mode, layer_origins=origins,
                               input_names=keras_model.input_names, output_names=keras_model.output_names,
                               float_reference=reference if reference is not None else float_reference(keras_model))
        if kind == "error":
            raise reply[1]
        if kind == "unexpected":
            raise ConversionError(f"Converting model {keras_model.name!r} for {target.name!r} failed in the worker "
                                  f"process with {reply[1]}", field="model")
        # "rebuilt differently": a layer the worker cannot make the same way
        self.in_process.append(reply[1])
        return convert(keras_model, target, samples, calibration_samples=_count(samples), **arguments)

    def _ask(self, payload: bytes, heartbeat) -> tuple:
        """Send the pickled job, wait for the reply while calling ``heartbeat``; a crash of the worker raises
        ConversionError."""
        self.start()
        process = self._process
        box: dict = {}
        done = threading.Event()

        def talk():  # blocking pipe I/O in a thread, so that this one can call heartbeat and kill
            try:
                _send(process.stdin, payload)
                box["reply"] = pickle.loads(_receive(process.stdout))
            except (OSError, EOFError, ValueError, pickle.UnpicklingError) as error:
                box["broken"] = error
            finally:
                done.set()

        threading.Thread(target=talk, name="tfopt-conversion-worker", daemon=True).start()
        try:
            while not done.wait(HEARTBEAT_S):
                if heartbeat is not None:
                    heartbeat()
        except BaseException:
            self._discard()  # kill it mid-conversion: the thread above then ends on the closed pipe
            raise
        if "reply" in box:
            return box["reply"]
        try:
            code = process.wait(_EXIT_WAIT_S)
        except subprocess.TimeoutExpired:  # alive, but its pipe broke: no use any more
            code = None
        log = self._log_tail()
        self._discard()
        raise ConversionError(
            f"The conversion worker process ended without an answer (exit code {code}"
            f"{', a crash' if code is not None and code < 0 else ''}): TFLite's converter or calibrator failed "
            "in native code. "
            + (f"Its last lines:\n{log}\n" if log else "")
            + "Try another quantization= mode, or keep the layer named there float (plan.keep_float).",
            field="model")


_shared: ConversionWorker | None = None
_shared_lock = threading.Lock()


def shared_worker() -> ConversionWorker:
    """The process's one ConversionWorker (the Studio's runs use it), killed when Python exits."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = ConversionWorker()
            atexit.register(_shared.close)
        return _shared


# -- what crosses ------------------------------------------------------------------------------------------------
def _count(samples) -> int:
    if samples is None:
        return CALIBRATION_SAMPLES
    first = next(iter(samples.values())) if isinstance(samples, dict) else samples
    return max(len(first), 1)


def _job(model, target: str, samples, arguments: dict) -> dict | str:
    """The job for ``model``: its config, weights per layer, recorded layer origins, and a probe (inputs and what
    the model computes on them here) that shows whether the worker's rebuilt copy is the same model. Or, where the
    model cannot be described so, why not (a string)."""
    from ..model.stack import ORIGINS_ATTRIBUTE, keras, np, tf

    try:
        config = model.get_config()
    except Exception as error:  # noqa: BLE001 -- a layer without get_config raises NotImplementedError, ...
        return f"model {model.name!r} has no serializable config ({type(error).__name__}: {error})"
    probe = _probe_inputs(model, samples)
    expected = None
    if probe is not None:
        expected = [np.asarray(t) for t in tf.nest.flatten(model(probe, training=False))]
    return {"config": config, "sequential": isinstance(model, keras.Sequential),
            "weights": [(layer.name, [(variable.name, variable.numpy()) for variable in layer.weights])
                        for layer in model.layers],
            "origins": dict(getattr(model, ORIGINS_ATTRIBUTE, None) or {}), "target": target, "samples": samples,
            "calibration_samples": _count(samples), "arguments": arguments, "probe": probe, "expected": expected}


def _probe_inputs(model, samples):
    """Two calibration samples, or two random inputs of the model's fixed shape; None when neither exists."""
    from ..model.stack import np

    if samples is not None:
        return {name: x[:2] for name, x in samples.items()} if isinstance(samples, dict) else samples[:2]
    rng = np.random.default_rng(0)
    inputs = []
    for tensor in model.inputs:
        dims = tensor.shape.as_list()[1:]
        if any(d is None for d in dims):
            return None
        dtype = tensor.dtype.as_numpy_dtype
        inputs.append(rng.random((2, *dims)).astype(dtype) if np.issubdtype(dtype, np.floating)
                      else np.zeros((2, *dims), dtype))
    return inputs[0] if len(inputs) == 1 else dict(zip(model.input_names, inputs))


class _JobPickler(pickle.Pickler):
    """Pickles a job; a plan (tw.Plan holds a lock and its views' callbacks) crosses as its JSON form
    (``to_dict``) and is made again from it (``from_dict``) in the worker, where the package is loaded anyway."""

    def reducer_override(self, obj):
        if hasattr(obj, "float_layers") and hasattr(obj, "to_dict") and hasattr(type(obj), "from_dict"):
            return type(obj).from_dict, (obj.to_dict(),)
        return NotImplemented


def _dumps(job: dict) -> bytes:
    buffer = io.BytesIO()
    _JobPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(job)
    return buffer.getvalue()


def _send(stream, payload: bytes) -> None:
    stream.write(struct.pack(">Q", len(payload)))
    stream.write(payload)
    stream.flush()


def _receive(stream) -> bytes:
    header = stream.read(8)
    if len(header) < 8:
        raise EOFError("the other side closed the pipe")
    size = struct.unpack(">Q", header)[0]
    payload = stream.read(size)
    if len(payload) < size:
        raise EOFError("the other side closed the pipe mid-message")
    return payload


# -- the worker's side -------------------------------------------------------------------------------------------------
def _rebuilt(job: dict):
    """The model of ``job`` built again here, or a string saying why it is not the same model."""
    from ..model.stack import application_layers, keras, np, record_origins, tf, tfmot

    try:
        with tfmot.quantization.keras.quantize_scope(application_layers()):
            model = (keras.Sequential if job["sequential"] else keras.Model).from_config(job["config"])
    except Exception as error:  # noqa: BLE001 -- an unknown custom layer raises ValueError, TypeError, ...
        return f"the worker cannot rebuild the model from its config ({type(error).__name__}: {error})"
    sources = dict(job["weights"])
    left_over = False
    for layer in model.layers:
        values = sources.get(layer.name, [])
        targets = layer.weights
        if len(values) == len(targets) and all(tuple(v.shape) == tuple(t.shape) for (_, v), t in zip(values, targets)):
            pairs = list(zip(targets, (v for _, v in values)))
        else:
            # tfmot's cluster-preserving quantizers keep extra variables (centroids, indices) that their config
            # does not carry; the rebuilt layer computes the same without them, which the probe below checks.
            by_name = {}
            for name, value in values:
                by_name.setdefault(_short(name), []).append(value)
            if any(len(found) > 1 for found in by_name.values()):
                return f"layer {layer.name!r} has weights the worker cannot tell apart"
            pairs = [(t, by_name.get(_short(t.name), [None])[0]) for t in targets]
            left_over = True
        for variable, value in pairs:
            if value is None or tuple(value.shape) != tuple(variable.shape):
                return f"layer {layer.name!r} has a weight ({variable.name}) the worker cannot fill"
            variable.assign(value)
    if job["origins"]:
        record_origins(model, job["origins"])
    if job["probe"] is not None:
        computed = [np.asarray(t) for t in tf.nest.flatten(model(job["probe"], training=False))]
        if len(computed) != len(job["expected"]) or not all(
                np.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(computed, job["expected"])):
            return "the model rebuilt in the worker computes other outputs"
    elif left_over:
        return "the model rebuilt in the worker could not be checked (no fixed input shape and no samples)"
    return model


def _short(name: str) -> str:
    return name.rsplit("/", 1)[-1].split(":")[0]


# Jobs between two clear_session() calls in the worker: clearing after each job made every conversion of the
# digits demo 0.2-0.6 s slower (TensorFlow warms up again), never clearing lets memory grow with each model.
_CLEAR_EVERY = 10


def _answer(job: dict) -> tuple:
    from .conversion import convert

    try:
        model = _rebuilt(job)
        if isinstance(model, str):
            return ("rebuilt differently", model)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ModelNotice)
            tfl = convert(model, job["target"], job["samples"], calibration_samples=job["calibration_samples"],
                          **job["arguments"])
        notices = list(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, ModelNotice)))
        reference = tfl.float_reference if isinstance(tfl.float_reference, bytes) else None  # a callable stays here
        return ("done", tfl.content, tfl.quantization, tfl.layer_origins, reference, notices)
    except Error as error:
        try:
            pickle.dumps(error)
            return ("error", error)
        except Exception:  # noqa: BLE001 -- an attribute that does not pickle
            return ("error", type(error)(str(error), layer=error.layer, field=error.field))
    except Exception as error:  # noqa: BLE001 -- sent back as text: its type may not exist on the other side
        return ("unexpected", f"{type(error).__name__}: {error}\n{traceback.format_exc(limit=6)}")


def main() -> None:
    """The worker: read jobs from stdin, write replies to stdout, until stdin closes."""
    protocol_in = sys.stdin.buffer
    protocol_out = os.fdopen(os.dup(1), "wb")
    quiet = os.open(os.devnull, os.O_WRONLY)
    os.dup2(quiet, 1)  # what TensorFlow prints must not mix with the replies
    from .. import runtime  # noqa: F401 -- its environment settings come before TensorFlow loads
    from ..model.stack import keras  # TensorFlow, tf_keras and tfmot load now, before the first job

    for jobs in itertools.count(1):
        try:
            job = pickle.loads(_receive(protocol_in))
        except EOFError:
            return
        _send(protocol_out, pickle.dumps(_answer(job), protocol=pickle.HIGHEST_PROTOCOL))
        if jobs % _CLEAR_EVERY == 0:  # Keras's graph keeps every model built here: free it now and then
            keras.backend.clear_session()


if __name__ == "__main__":
    main()
