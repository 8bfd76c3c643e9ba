"""The ``on_<event>(callback, remove=False)`` convention of the widgets, in one place."""

from __future__ import annotations


def register(callbacks: list, callback, remove: bool) -> None:
    """Add ``callback`` to ``callbacks``, or drop it with ``remove=True`` (a callback not there is ignored)."""
    if remove:
        callbacks[:] = [c for c in callbacks if c != callback]  # ==, not is: bound methods are new each time
    else:
        callbacks.append(callback)
