"""Writes to child processes that fail with EPIPE instead of killing the scanner.

Python ignores SIGPIPE, but a host application may restore the default (some CLIs do, to stop quietly
when piped into ``head``). Then a write to a scan worker or HDF5 child that has just died would kill the
whole process, with no report. Blocking SIGPIPE in the writing thread for the duration of the write turns
it into the ``BrokenPipeError`` the callers already handle, whatever the host's disposition.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator


@contextlib.contextmanager
def no_sigpipe() -> Iterator[None]:
    """Within the block, a write to a pipe without a reader raises ``BrokenPipeError`` in this thread."""
    if not hasattr(signal, "pthread_sigmask"):  # not POSIX: there is no SIGPIPE
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGPIPE})
    try:
        yield
    finally:
        if signal.SIGPIPE not in previous:
            # A SIGPIPE raised while blocked stays pending and would be delivered on unblocking: consume it.
            while signal.SIGPIPE in signal.sigpending():
                signal.sigtimedwait({signal.SIGPIPE}, 0)
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
