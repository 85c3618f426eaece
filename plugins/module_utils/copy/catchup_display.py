# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The console lines of a catch-up: one per table with drift (every table with --verbose)
and a progress line every ``interval`` seconds covering the comparison and the repair."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import threading
import time

from ansible_collections.icds.citus_migration.plugins.module_utils.copy.progress import fmt_duration


def describe_drift(res) -> str:
    """One line: what was compared, what differs, what was (or would be) repaired."""
    if res.status == 'errored':
        return 'ERROR %s' % res.error
    if res.status == 'skipped':
        return 'skipped: %s' % res.error
    how = ('%d segments by %s' % (res.segments, res.key)) if res.key else 'whole (no usable key)'
    text = '%s compared, %d differing' % (how, res.ranges_differing if res.key else res.differing_segments)
    if res.status == 'drifted':
        return text + ', %d rows to repair' % res.rows_to_repair
    if res.status == 'repaired':
        return text + ', repaired %d rows (%d deleted, %d copied) in %d transactions' % (
            res.rows_to_repair, res.rows_deleted, res.rows_copied, res.transactions)
    if res.status == 'recopied':
        return text + ', re-copied whole: %d rows' % res.rows_copied
    return text + ', equal'


class CatchupDisplay:
    """Called from the worker threads (``result``), prints under a lock."""

    def __init__(self, stream, interval: float, verbose: bool, clock=time.monotonic):
        self.stream = stream
        self.interval = interval
        self.verbose = verbose
        self.total = 0
        self.done = 0
        self.segments = 0
        self.differing = 0
        self.repaired_rows = 0
        self._clock = clock
        self._started = None
        self._last = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """The catch-up begins now (else its first result marks the start)."""
        with self._lock:
            self._started = self._last = self._clock()

    def elapsed(self) -> float:
        return 0.0 if self._started is None else self._clock() - self._started

    def result(self, res) -> None:
        with self._lock:
            now = self._clock()
            if self._started is None:
                self._started = now - res.seconds
                self._last = self._started
            self.done += 1
            self.segments += res.segments
            self.differing += res.ranges_differing
            self.repaired_rows += res.rows_repaired
            if self.verbose or res.status not in ('equal',):
                self._print('%s -> %s: %s' % (res.source_table, res.target_table, describe_drift(res)))
            if self.interval and now - self._last >= self.interval or self.done == self.total:
                self._last = now
                self._print('Catch-up: %d of %d tables compared (%d%%), %d segments, %d differing '
                            'ranges, %d rows repaired in %s' % (
                                self.done, self.total, 100 * self.done // max(1, self.total),
                                self.segments, self.differing, self.repaired_rows,
                                fmt_duration(self.elapsed())))

    def _print(self, line: str) -> None:
        self.stream.write(line + '\n')
        self.stream.flush()
