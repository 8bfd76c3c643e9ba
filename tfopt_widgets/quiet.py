"""Keep harmless native log lines (TFLite converter, LiteRT delegate banners) out of notebooks and test output."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings


class CapturedText:
    """What was written to file descriptor 2 inside :func:`captured_stderr`; filled in when the block ends."""

    text = ""


@contextlib.contextmanager
def captured_stderr(*ignored_warnings: str):
    """Send file descriptor 2 (where C++ code logs) to a buffer, and ignore Python warnings matching the messages.

    The caller gets a :class:`CapturedText` to quote in an error message when the guarded call fails.
    """
    captured = CapturedText()
    with tempfile.TemporaryFile() as buffer, warnings.catch_warnings():
        for message in ignored_warnings:
            warnings.filterwarnings("ignore", message=message)
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(buffer.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            buffer.seek(0)
            captured.text = buffer.read().decode(errors="replace")


@contextlib.contextmanager
def captured_stdout():
    """Send file descriptor 1 and ``sys.stdout`` to a buffer: for tools that print a report instead of returning it.

    TFLite's ``Analyzer.analyze`` prints its report (from Python, and native code may write to fd 1 directly); the
    caller gets a :class:`CapturedText` with everything written, filled in when the block ends.
    """
    captured = CapturedText()
    with tempfile.TemporaryFile() as buffer, tempfile.TemporaryFile(mode="w+") as text:
        sys.stdout.flush()
        saved = os.dup(1)
        os.dup2(buffer.fileno(), 1)
        try:
            with contextlib.redirect_stdout(text):
                yield captured
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
            buffer.seek(0)
            text.seek(0)
            captured.text = buffer.read().decode(errors="replace") + text.read()
