"""The non-finite guard: skip optimizer steps with a NaN/inf loss or gradient, stop after too many in a row."""
from __future__ import annotations

import math


class NonFiniteError(RuntimeError):
    """Raised when ``max_consecutive`` optimizer steps in a row had a non-finite loss or gradient."""


class NonFiniteGuard:
    """Counts consecutive skipped steps. ``check(...)`` returns True when the step may be applied."""

    def __init__(self, max_consecutive: int):
        self.max_consecutive = max_consecutive
        self.consecutive = 0
        self.total_skipped = 0

    def check(self, step: int, loss: float, grad_norm: float) -> bool:
        if math.isfinite(loss) and math.isfinite(grad_norm):
            self.consecutive = 0
            return True
        self.consecutive += 1
        self.total_skipped += 1
        if self.consecutive >= self.max_consecutive:
            raise NonFiniteError(
                f"step {step}: loss={loss}, grad norm={grad_norm} — {self.consecutive} optimizer steps in a row "
                f"had a non-finite loss or gradient (train.max_nonfinite={self.max_consecutive}); stopping. "
                "Lower train.lr, enable train.clip_grad_norm, or use precision float32/bf16 instead of fp16.")
        return False

    def state_dict(self) -> dict:
        return {"consecutive": self.consecutive, "total_skipped": self.total_skipped}

    def load_state_dict(self, state: dict) -> None:
        self.consecutive = int(state["consecutive"])
        self.total_skipped = int(state["total_skipped"])
