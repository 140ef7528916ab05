"""SIGINT/SIGTERM → finish the current step, write a checkpoint, exit cleanly."""
from __future__ import annotations

import signal
import threading


class GracefulStop:
    """Context manager; ``requested`` becomes the signal's name after SIGINT or SIGTERM.

    A second SIGINT restores the default behaviour (KeyboardInterrupt), so a stuck run can still be stopped.
    Only installs handlers in the main thread (signal handlers cannot be set elsewhere).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested: str | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    def __enter__(self) -> "GracefulStop":
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
