"""A small progress bar on stderr (only when stderr is a terminal), with samples/s."""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, desc: str, unit: str = "samples", enabled: bool | None = None):
        self.total, self.desc, self.unit, self.n = total, desc, unit, 0
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.start = self._last = time.perf_counter()

    def update(self, k: int = 1) -> None:
        self.n += k
        now = time.perf_counter()
        if self.enabled and (now - self._last > 0.2 or self.n >= self.total):
            self._last = now
            rate = self.n / max(now - self.start, 1e-9)
            frac = self.n / max(self.total, 1)
            bar = "#" * int(frac * 24)
            eta = (self.total - self.n) / rate if rate > 0 else 0
            sys.stderr.write(f"\r{self.desc} [{bar:<24}] {self.n}/{self.total} {self.unit} "
                             f"{rate:,.0f}/s eta {eta:,.0f}s ")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")

    @property
    def rate(self) -> float:
        return self.n / max(time.perf_counter() - self.start, 1e-9)
