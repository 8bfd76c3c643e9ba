"""Progress of a run for any view: stages, steps and epochs, elapsed time, Cancel (tw.Progress), a text bar for
scripts and the CLI, and a call that a cancel can interrupt. Imports only ``errors``; no TensorFlow."""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import time
from collections.abc import Callable

from .errors import Cancelled

# The stages a run reports, in the user's words.
STAGE_WORDS = {
    "baseline": "float32 baseline: converting and measuring",
    "prune": "pruning: fine-tuning",
    "cluster": "clustering: fine-tuning",
    "quantize": "quantization-aware training",
    "convert": "converting to TensorFlow Lite (calibration included)",
    "evaluate": "measuring the TFLite file with LiteRT on this CPU",
    "layer errors": "measuring each layer's error against the float model",
    "sensitivity": "sensitivity: scoring each layer compressed alone",
}
# How often a stage of unknown length reports that it still runs (and a cancel is looked at).
HEARTBEAT_S = 0.2


class Progress:
    """Where a run is, for any view: its stage, the steps (and epochs) done of a stage whose length is known, that
    the length is not known (conversion with its calibration, evaluation), the time taken; and Cancel.

    The engine reports through the progress protocol: ``tw.run``, ``tw.optimize`` and ``tw.sensitivity`` call
    ``progress(stage, step, total)`` after every training step (``total`` > 0: a determinate stage) and, for a
    stage of unknown length (``total`` 0: indeterminate), when it starts and about every 0.2 s while it runs.
    Raising ``tw.Cancelled`` from that call stops the run. Any callable with that signature serves; a Progress
    adds the state below, views (``on_update``, ``text=True``) and :meth:`cancel`.

    ``text=True`` shows a text bar on stderr (or ``text=file``): a tqdm bar per stage on a terminal; elsewhere (a
    log, CI) one line per stage when it ends. ``epochs``: the fine-tuning epochs per stage (tw.run sets it), which
    turns steps into "epoch 2 of 3".

    >>> progress = tw.Progress()
    >>> progress.on_update(lambda p: print(p.describe()))
    >>> tw.run(model, plan, "cpu", (x_train, y_train), epochs=2, progress=progress)
    quantization-aware training: epoch 1 of 2, step 1 of 84 · 0.4 s
    ...
    """

    def __init__(self, *, text=False, epochs: int | None = None):
        self.stage = ""  # the stage running now ('' before the first report)
        self.step = 0  # steps done in this stage
        self.total = 0  # steps in this stage; 0: its length is not known
        self.epochs = epochs
        self.started: float | None = None  # time.monotonic() of the first report
        self.stage_started: float | None = None
        self._cancel = threading.Event()
        self._handlers: list[Callable[[Progress], None]] = []
        self._text = _TextBar(_terminal_stderr() if text is True else text) if text else None

    def __call__(self, stage: str, step: int, total: int) -> None:
        """The protocol: ``stage`` is at ``step`` of ``total`` (0: unknown); raises tw.Cancelled after cancel()."""
        if self._cancel.is_set():
            raise Cancelled("Cancelled by the user; your model is unchanged.")
        now = time.monotonic()
        if self.started is None:
            self.started = now
        if stage != self.stage:
            self.stage_started = now
        self.stage, self.step, self.total = stage, int(step), int(total)
        if self._text is not None:
            self._text.update(self)
        for handler in list(self._handlers):
            handler(self)

    def on_update(self, callback: Callable[[Progress], None], remove: bool = False) -> None:
        """Call ``callback(progress)`` at every report (or stop with ``remove=True``); it runs in the run's thread."""
        if remove:
            self._handlers = [h for h in self._handlers if h is not callback]
        elif callback not in self._handlers:
            self._handlers.append(callback)

    def cancel(self) -> None:
        """Stop the run: its next report raises tw.Cancelled (training: at the next step; conversion, calibration
        and evaluation: within 0.2 s, see tw.run's ``worker``). Safe to call from any thread."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def kind(self) -> str:
        """"determinate" (steps of a known total) or "indeterminate" (a stage of unknown length)."""
        return "determinate" if self.total > 0 else "indeterminate"

    @property
    def epoch(self) -> int | None:
        """The epoch running now (from 1) in a fine-tuning stage, when ``epochs`` is known."""
        if not self.epochs or self.total <= 0 or self.total % self.epochs:
            return None
        return min((max(self.step, 1) - 1) // (self.total // self.epochs) + 1, self.epochs)

    @property
    def elapsed(self) -> float:
        """Seconds since the first report."""
        return 0.0 if self.started is None else time.monotonic() - self.started

    @property
    def stage_elapsed(self) -> float:
        """Seconds since this stage began."""
        return 0.0 if self.stage_started is None else time.monotonic() - self.stage_started

    def words(self) -> str:
        """The stage in words: "quantization-aware training"."""
        return STAGE_WORDS.get(self.stage, self.stage)

    def counts(self) -> str:
        """"epoch 2 of 3, step 45 of 126" in a determinate stage, else ''."""
        if self.total <= 0:
            return ""
        epoch = self.epoch
        steps = f"step {self.step:,} of {self.total:,}"
        return f"epoch {epoch} of {self.epochs}, {steps}" if epoch is not None else steps

    def describe(self) -> str:
        """One line: "quantization-aware training: epoch 2 of 3, step 45 of 126 · 12.3 s"."""
        counts = self.counts()
        return f"{self.words()}{': ' + counts if counts else ''} · {self.stage_elapsed:.1f} s"

    def end(self) -> None:
        """The run is over: the text bar ends its last stage (tw.run calls this)."""
        if self._text is not None:
            self._text.close()

    def __repr__(self) -> str:
        return f"<Progress {self.describe() if self.stage else 'not started'}{'; cancelled' if self.cancelled else ''}>"


_STDERR_COPY: list = []  # the one copy of descriptor 2 that text bars write to (see _terminal_stderr)


def _terminal_stderr():
    """Where a text bar writes by default: stderr; in a script, a copy of its file descriptor (made once), so that
    the bar is not held back while the engine captures descriptor 2 (fine-tuning, conversion:
    quiet.stderr_without). A notebook's sys.stderr is the kernel's stream, kept as it is."""
    if sys.stderr is None or sys.stderr is not sys.__stderr__:
        return sys.stderr
    if not _STDERR_COPY:
        try:
            _STDERR_COPY.append(open(os.dup(sys.stderr.fileno()), "w", buffering=1,  # noqa: SIM115 -- kept open
                                     encoding=sys.stderr.encoding, errors="replace"))
        except (OSError, ValueError, AttributeError):  # no real descriptor (an embedding application)
            return sys.stderr
    return _STDERR_COPY[0]


class _TextBar:
    """Progress as text on ``file``: a tqdm bar per stage on a terminal; elsewhere one line per stage at its end."""

    def __init__(self, file):
        self.file = file
        self.live = bool(getattr(file, "isatty", lambda: False)())
        self.bar = None
        self.stage, self.began = "", 0.0
        self.line = ""  # what the stage did, printed when it ends (not live)

    def update(self, progress: Progress) -> None:
        if progress.stage != self.stage:
            self.close()
            self.stage, self.began = progress.stage, time.monotonic()
            if self.live:
                from tqdm.auto import tqdm

                fmt = None if progress.total else "{desc}: {elapsed}"
                self.bar = tqdm(total=progress.total or None, desc=progress.words(), unit="step", file=self.file,
                                bar_format=fmt, leave=True, dynamic_ncols=True)
        if self.bar is not None:
            epoch = progress.epoch
            desc = progress.words() + (f" (epoch {epoch} of {progress.epochs})" if epoch else "")
            if desc != self.bar.desc:
                self.bar.set_description_str(desc, refresh=False)
            if progress.total:
                self.bar.update(progress.step - self.bar.n)
            else:
                self.bar.refresh()
        else:
            epochs = progress.epochs if progress.total and progress.epoch else None
            counts = (f", {epochs} epoch{'s' * (epochs != 1)}" if epochs else "") + \
                (f", {progress.total:,} steps" if progress.total else "")
            self.line = f"{progress.words()}{counts}"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.line:
            print(f"{self.line}: {time.monotonic() - self.began:.1f} s", file=self.file, flush=True)
        self.line, self.stage = "", ""


class Stopped(Exception):
    """Raised in the helper thread of :func:`_interruptible` whose work was cancelled."""


def interruptible(call, heartbeat):
    """``call()`` in a helper thread while this one calls ``heartbeat()`` every HEARTBEAT_S. What the heartbeat
    raises (tw.Cancelled) is raised in the helper too, at its next Python instruction (tw.evaluate: after the
    interpreter call running now), then here: the work stops instead of running on unseen."""
    box: dict = {}
    done = threading.Event()

    def work():
        try:
            box["value"] = call()
        except BaseException as error:  # noqa: BLE001 -- handed to the caller's thread
            box["error"] = error
        finally:
            done.set()

    helper = threading.Thread(target=work, name="tfopt-evaluate", daemon=True)
    helper.start()
    try:
        while not done.wait(HEARTBEAT_S):
            heartbeat()
    except BaseException:
        if not done.is_set():
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(helper.ident), ctypes.py_object(Stopped))
            helper.join(1.0)  # its stderr capture ends before the next run's begins
        raise
    if "error" in box:
        raise box["error"]
    return box["value"]
