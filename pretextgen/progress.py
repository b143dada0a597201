"""Progress on stderr: a bar on a terminal; without one (a batch job, a container, ``> log 2>&1``) a
plain line every ``LINE_EVERY`` seconds, so a log shows that work goes on and when it will end."""
from __future__ import annotations

import sys
import time

LINE_EVERY = 30.0  # seconds between plain progress lines when stderr is not a terminal


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """``enabled``: None or True (a bar on a terminal, else plain lines), False (silent). ``update``
    takes extra fields (``step=``, ``loss=``) shown after the count, rate and ETA."""

    def __init__(self, total: int, desc: str, unit: str = "samples", enabled: bool | None = None):
        self.total, self.desc, self.unit, self.n = total, desc, unit, 0
        self.mode = None if enabled is False else ("bar" if sys.stderr.isatty() else "lines")
        self.start = self._last = time.perf_counter()
        self.fields: dict = {}

    @property
    def enabled(self) -> bool:
        return self.mode is not None

    def update(self, k: int = 1, **fields) -> None:
        self.n += k
        self.fields.update(fields)
        now = time.perf_counter()
        if self.mode == "bar" and (now - self._last > 0.2 or self.n >= self.total):
            self._last = now
            frac = self.n / max(self.total, 1)
            sys.stderr.write(f"\r{self.desc} [{'#' * int(frac * 24):<24}] {self.n}/{self.total} {self.unit} "
                             f"{self.rate:,.0f}/s eta {duration(self.eta)}{self._extra()} ")
            sys.stderr.flush()
        elif self.mode == "lines" and now - self._last >= LINE_EVERY:
            self._last = now
            self.line()

    def line(self, text: str | None = None) -> None:
        """Without a terminal: one plain line now (``text``, else the status). On a terminal the bar
        stays the only output."""
        if self.mode == "lines":
            if text is None:
                pct = 100 * self.n / max(self.total, 1)
                text = (f"{self.desc}: {self.n:,}/{self.total:,} {self.unit} ({pct:.0f}%), {self.rate:,.1f}/s, "
                        f"eta {duration(self.eta)}{self._extra()}")
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    def _extra(self) -> str:
        return "".join(f", {k} {v}" for k, v in self.fields.items())

    def close(self) -> None:
        if self.mode == "bar":
            sys.stderr.write("\n")

    @property
    def rate(self) -> float:
        return self.n / max(time.perf_counter() - self.start, 1e-9)

    @property
    def eta(self) -> float:
        rate = self.rate
        return (self.total - self.n) / rate if rate > 0 else 0.0
