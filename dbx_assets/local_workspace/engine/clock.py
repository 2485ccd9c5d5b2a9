"""The workspace's reported clock: real time shifted by the clock-skew fault (`clock_offset_seconds`).

Times are stored in real milliseconds and shifted only when reported, so changing the
offset while running moves every timestamp a client sees at once and durations stay true.
"""

from __future__ import annotations

import time
from typing import Any, overload

# Keys that hold epoch-millisecond timestamps in the responses we serve.
TIME_KEYS = frozenset(
    {
        "start_time",
        "end_time",
        "created_time",
        "terminated_time",
        "last_state_loss_time",
        "last_restarted_time",
        "last_activity_time",
        "modification_time",
        "last_modified",
        "created_at",
        "modified_at",
    }
)


def real_now_ms() -> int:
    return int(time.time() * 1000)


class Clock:
    def __init__(self, offset_ms: int = 0):
        self.offset_ms = offset_ms

    def now_ms(self) -> int:
        """The workspace's idea of now (what a skewed server would stamp)."""
        return real_now_ms() + self.offset_ms

    @overload
    def report(self, ms: int) -> int: ...
    @overload
    def report(self, ms: None) -> None: ...
    def report(self, ms: int | None) -> int | None:
        """A stored real timestamp as the workspace reports it; 0/None mean "unset" and stay so."""
        return ms + self.offset_ms if ms else ms

    def from_reported(self, ms: int) -> int:
        """A timestamp a client sent in the workspace's clock (e.g. a list filter) back to real time."""
        return ms - self.offset_ms

    def shift(self, doc: Any) -> Any:
        """Shift every timestamp key in a response document (in place; returns it)."""
        if not self.offset_ms:
            return doc
        if isinstance(doc, dict):
            for k, v in doc.items():
                if k in TIME_KEYS and isinstance(v, int) and not isinstance(v, bool):
                    doc[k] = self.report(v)
                elif isinstance(v, (dict, list)):
                    self.shift(v)
        elif isinstance(doc, list):
            for v in doc:
                self.shift(v)
        return doc
