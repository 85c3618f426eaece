# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Progress arithmetic for a run and the old tool's one-line progress format."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import time
from typing import Dict, Optional, Tuple


def fmt_duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return 'unknown'
    seconds = int(max(0, seconds))
    return '%d:%02d:%02d' % (seconds // 3600, seconds % 3600 // 60, seconds % 60)


def fmt_seconds(seconds: Optional[float]) -> str:
    """A table's duration: ``12.34s`` under a minute (most ICDS tables), else H:MM:SS."""
    if seconds is None:
        return 'unknown'
    if seconds < 60:
        return '%.2fs' % max(0.0, seconds)
    return fmt_duration(seconds)


def fmt_bytes(n: float) -> str:
    for unit in ('B', 'kB', 'MB', 'GB', 'TB'):
        if abs(n) < 1024 or unit == 'TB':
            return ('%.0f %s' if unit == 'B' else '%.1f %s') % (n, unit)
        n /= 1024.0
    return '%.1f TB' % n  # pragma: no cover


class Progress:
    """Counts tables and data (estimated rows, as the old tool did) for one run."""

    def __init__(self, estimates: Dict[int, Tuple[int, int]], clock=time.monotonic):
        self._est = estimates  # manifest id -> (estimated rows, bytes on disk)
        self.estimates = estimates
        self.total_tables = len(estimates)
        self.total_data = sum(v[0] for v in estimates.values())
        self.total_bytes = sum(v[1] for v in estimates.values())  # source size on disk
        self.done_tables = 0
        self.errored_tables = 0
        self.done_data = 0
        self.errored_data = 0
        self.rows_copied = 0
        self.bytes_copied = 0
        self.inflight_bytes = 0
        self._clock = clock
        self.started = clock()

    def finished(self, table_id: int, ok: bool, rows: Optional[int] = None,
                 nbytes: Optional[int] = None) -> None:
        est = self._est.get(table_id, (0, 0))[0]
        if ok:
            self.done_tables += 1
            self.done_data += est
            self.rows_copied += rows or 0
            self.bytes_copied += nbytes or 0
        else:
            self.errored_tables += 1
            self.errored_data += est

    def elapsed(self) -> float:
        return self._clock() - self.started

    def data_fraction(self) -> float:
        if self.total_data > 0:
            return min(1.0, (self.done_data + self.errored_data) / float(self.total_data))
        return self.table_fraction()

    def table_fraction(self) -> float:
        if not self.total_tables:
            return 1.0
        return (self.done_tables + self.errored_tables) / float(self.total_tables)

    def remaining(self) -> Optional[float]:
        frac = self.data_fraction()
        if frac <= 0:
            return None
        return self.elapsed() * (1 - frac) / frac

    def throughput(self) -> float:
        elapsed = self.elapsed()
        return (self.bytes_copied + self.inflight_bytes) / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        """``Progress: X% data (a of b) (e errored), Y% tables (n of N) (e errored) in T (R remaining)``"""
        return ('Progress: %d%% data (%d of %d) (%d errored), %d%% tables (%d of %d) (%d errored) '
                'in %s (%s remaining)' % (
                    int(self.data_fraction() * 100), self.done_data, self.total_data,
                    self.errored_data, int(self.table_fraction() * 100), self.done_tables,
                    self.total_tables, self.errored_tables, fmt_duration(self.elapsed()),
                    fmt_duration(self.remaining())))
