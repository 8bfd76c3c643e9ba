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
