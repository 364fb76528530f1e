"""Accounting for a data-prep run: every input record is either written or dropped, with a reason.

Counts are of INPUT records (``read = written + dropped``); the windows, shuffled copies and other
outputs one record turns into are counted separately under ``outputs``.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

MAX_LOGGED_ERRORS = 50


def length_stats(values: list[int]) -> dict[str, float | int]:
    """count/min/mean/p50/p95/max of a list of lengths (nearest-rank percentiles)."""
    if not values:
        return {"count": 0}
    v = sorted(values)

    def pct(p: float) -> int:
        return v[min(len(v) - 1, max(0, math.ceil(p / 100 * len(v)) - 1))]

    return {"count": len(v), "min": v[0], "mean": round(sum(v) / len(v), 2), "p50": pct(50), "p95": pct(95),
            "max": v[-1]}


@dataclass
class PrepReport:
    """What happened to each input record, and what came out."""

    read: int = 0
    written: int = 0
    dropped: Counter[str] = field(default_factory=Counter)  # reason -> input records
    repaired: Counter[str] = field(default_factory=Counter)  # repair kind -> count
    repaired_records: int = 0  # input records that needed at least one repair
    outputs: Counter[str] = field(default_factory=Counter)  # windows, shuffled copies, trimmed, ...
    errors: list[dict[str, Any]] = field(default_factory=list)  # the first rejected records, for the user

    def record_read(self) -> None:
        self.read += 1

    def record_written(self) -> None:
        self.written += 1

    def record_dropped(self, reason: str, *, message: str | None = None, line: int | None = None,
                       qid: str | None = None) -> None:
        self.dropped[reason] += 1
        if len(self.errors) < MAX_LOGGED_ERRORS:
            self.errors.append({"reason": reason, "line": line, "qid": qid, "message": message})

    def add_repairs(self, repairs: dict[str, int]) -> None:
        if any(repairs.values()):
            self.repaired_records += 1
        for k, v in repairs.items():
            if v:
                self.repaired[k] += v

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def invariant_holds(self) -> bool:
        return self.read == self.written + self.dropped_total

    def check(self) -> None:
        """Raise if a record went missing: a bug, never a user error."""
        if not self.invariant_holds():
            raise RuntimeError(f"accounting broken: read {self.read} != written {self.written} + dropped "
                               f"{self.dropped_total} ({dict(self.dropped)})")

    def to_json(self) -> dict[str, Any]:
        return {
            "records": {"read": self.read, "written": self.written, "dropped": self.dropped_total,
                        "repaired": self.repaired_records},
            "invariant": "read = written + dropped (input records)",
            "invariant_holds": self.invariant_holds(),
            "dropped": dict(sorted(self.dropped.items())),
            "repaired": dict(sorted(self.repaired.items())),
            "outputs": dict(sorted(self.outputs.items())),
            "errors": self.errors,
            "errors_truncated": self.dropped_total > len(self.errors),
        }
