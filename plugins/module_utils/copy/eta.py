# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The recent data rate and the time left from it.

ICDS has a few huge tables and thousands of small ones: an ETA from table counts (or from the
average since the start, when ``already copied`` tables flew by) is wrong for most of a run.
The rate here is bytes per second over a sliding window of recent samples, and the time left
is the bytes still to copy divided by that rate.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from collections import deque
from typing import Deque, Optional, Tuple

DEFAULT_WINDOW_S = 120.0
# below this much history the rate is not shown: the first second of a COPY says little
MIN_SPAN_S = 2.0


class RateWindow:
    """Bytes per second over the last ``window_s`` seconds of ``add(time, total)`` samples."""

    def __init__(self, window_s: float = DEFAULT_WINDOW_S, min_span_s: float = MIN_SPAN_S):
        self.window_s = window_s
        self.min_span_s = min_span_s
        self._samples: Deque[Tuple[float, float]] = deque()

    def add(self, now: float, total: float) -> None:
        """Record that ``total`` bytes were done at time ``now`` (monotonic seconds)."""
        if self._samples and now <= self._samples[-1][0]:
            self._samples[-1] = (self._samples[-1][0], total)
            return
        self._samples.append((now, total))
        # keep one sample at or before the window's start, so the window is always full
        while len(self._samples) > 2 and self._samples[1][0] <= now - self.window_s:
            self._samples.popleft()

    def rate(self) -> Optional[float]:
        """Bytes per second, or None until ``min_span_s`` of history exists."""
        if len(self._samples) < 2:
            return None
        (t0, v0), (t1, v1) = self._samples[0], self._samples[-1]
        if t1 - t0 < self.min_span_s:
            return None
        return max(0.0, (v1 - v0) / (t1 - t0))

    def eta(self, remaining: float) -> Optional[float]:
        """Seconds until ``remaining`` more bytes are done at the recent rate."""
        if remaining <= 0:
            return 0.0
        rate = self.rate()
        if not rate:
            return None
        return remaining / rate
