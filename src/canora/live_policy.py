"""How much compute headroom a live session gives the converter, and when it lowers the refiner's steps.

Both read the compute of *sung* blocks only: a block of silence or breath skips the refiner and costs a fraction of
a sung one, so loads measured over pauses promise headroom the singing does not have.

* :func:`choose_headroom_ms`: at start-up, from a warm-up on a synthetic sung phrase, the budget is
  :data:`HEADROOM_FACTOR` x the 95th percentile of the sung blocks' compute (at least :data:`HEADROOM_MIN_MS`).
  The budget is fixed for the session (it is part of the latency).
* :class:`StepGovernor`: while singing, a sung block that used more than :data:`STEP_DOWN_SHARE` of the budget
  lowers the refiner's steps by one (down to 1); after :data:`STEP_UP_BLOCKS` sung blocks in a row under
  :data:`STEP_UP_SHARE` of it, they go back up by one (up to the steps asked for).
"""

from __future__ import annotations

import numpy as np

#: the compute budget is this many times the warm-up's sung 95th percentile ...
HEADROOM_FACTOR = 1.5
#: ... and at least this many ms
HEADROOM_MIN_MS = 20.0
#: a sung block over this share of the budget lowers the steps
STEP_DOWN_SHARE = 0.8
#: this many sung blocks in a row under this share of the budget raise them again
STEP_UP_BLOCKS = 40
STEP_UP_SHARE = 0.4


def choose_headroom_ms(sung_ms: list[float] | np.ndarray) -> float:
    """The compute budget (ms) from the compute of sung blocks (ms each) -> :data:`HEADROOM_FACTOR` x their 95th
    percentile, at least :data:`HEADROOM_MIN_MS`; :class:`ValueError` without any."""
    a = np.asarray(sung_ms, np.float64)
    if not len(a):
        raise ValueError("no sung block was measured")
    return max(HEADROOM_MIN_MS, HEADROOM_FACTOR * float(np.percentile(a, 95)))


class StepGovernor:
    """The refiner's steps for a live session: ``steps`` asked for, ``budget_ms`` of compute per block.
    ``observe(ms)`` after each sung block -> the steps for the next; :attr:`lowest` and :attr:`changes` for the
    summary."""

    def __init__(self, steps: int, budget_ms: float) -> None:
        self.max_steps = self.steps = self.lowest = int(steps)
        self.budget_ms = float(budget_ms)
        self.changes = 0
        self._calm = 0

    def observe(self, ms: float) -> int:
        if ms > STEP_DOWN_SHARE * self.budget_ms and self.steps > 1:
            self.steps -= 1
            self.changes += 1
            self._calm = 0
        elif ms < STEP_UP_SHARE * self.budget_ms:
            self._calm += 1
            if self._calm >= STEP_UP_BLOCKS and self.steps < self.max_steps:
                self.steps += 1
                self.changes += 1
                self._calm = 0
        else:
            self._calm = 0
        self.lowest = min(self.lowest, self.steps)
        return self.steps
