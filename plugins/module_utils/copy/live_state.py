# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a run is doing now, by data: the jobs in flight, bytes done, the recent rate, the ETA.

``LiveState`` is a ``RunEvents`` that every front builds on: the terminal display and the
plain periodic line (cli), and the snapshot file ``<manifest>.live.json`` that ``status``
and the Ansible ``wait_for_copy`` task read while a copy runs elsewhere.

Data is counted in source bytes on disk (the sizes ``source_stats`` reads before the run),
the unit an operator knows the tables by. A job in flight has streamed ``counter`` bytes of
COPY data; that is turned into source bytes by the ratio seen on tables already copied
(text COPY and heap pages differ in size), and never counts beyond the job's own estimate.

The rate is measured on the bytes actually streamed (they only grow, smoothly), never on the
source-byte figures: those jump when a job ends or the ratio is refined, and a jump in a rate
window reads as speed. It is taken per busy worker (bytes over worker-seconds in the window):
one COPY is bound by one backend, so at the end of a run, when one huge table is left on one
worker, the others' speed does not help. The time left plays the rest of the run forward:
each job in flight ends when its bytes left are streamed at that per-worker rate, and the
tables not started go, in order, to the first worker free (``simulate_finish``).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import heapq
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional

from ansible_collections.icds.citus_migration.plugins.module_utils.copy.eta import (
    DEFAULT_WINDOW_S, RateWindow)
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.progress import (
    Progress, fmt_bytes, fmt_duration)
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.runner import (
    RunEvents, RunReport, TableResult)
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.table_copy import ByteCounter
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.live_file import write_snapshot
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.store import (
    ManifestRow, utc_now)

# Only jobs at least this big calibrate the stream-to-disk ratio: an 8 kB page holding one
# row says nothing about how a 40 GB table streams.
RATIO_MIN_ESTIMATE = 1 << 20
RATIO_BOUNDS = (0.2, 5.0)


@dataclass
class JobView:
    """One worker's current job."""

    worker: int
    row: ManifestRow
    part: str
    estimate: int
    counter: ByteCounter
    started: float


class LiveState(RunEvents):
    """Counts tables and data as the run's events arrive; ``snapshot()`` reads them."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 window_s: float = DEFAULT_WINDOW_S, snapshot_file: Optional[str] = None,
                 snapshot_interval: float = 2.0, parallel: int = 1):
        self.clock = clock
        self.parallel = max(1, parallel)
        self.rate = RateWindow(window_s)  # bytes streamed
        self.busy = RateWindow(window_s)  # worker-seconds: its rate is the mean busy workers
        self._busy_total = 0.0
        self._busy_at = clock()
        self._estimates: Dict[int, int] = {}  # manifest id -> source bytes, in run order
        self._started_ids = set()
        self.lock = threading.RLock()
        self.snapshot_file = snapshot_file
        self.snapshot_interval = snapshot_interval
        self._snapshot_at = None  # type: Optional[float]
        self.progress = None  # type: Optional[Progress]
        self.started_at = clock()
        self.started_utc = utc_now()
        self.total_est = 0
        self.total_tables = 0
        self.jobs: Dict[int, JobView] = {}
        self.copied_est = 0
        self.copied_sent = 0
        self.finished_sent = 0  # bytes streamed by every job that ended, whatever its end
        self.ratio_est = 0
        self.ratio_sent = 0
        self.skipped_est = 0
        self.errored_est = 0
        self.counts = {'copied': 0, 'already_copied': 0, 'errored': 0}
        self.last_error = None  # type: Optional[str]
        self.finished_run = False

    # -- events ------------------------------------------------------------------------
    def started(self, progress: Progress) -> None:
        with self.lock:
            self.progress = progress
            self.total_est = progress.total_bytes
            self.total_tables = progress.total_tables
            self.started_at = self._busy_at = self.clock()
            self.started_utc = utc_now()
            self._estimates = dict((k, v[1]) for k, v in progress.estimates.items())
            self._sample(self.started_at)
        self._maybe_write(force=True)

    def job_started(self, worker_index: int, row: ManifestRow, part: str,
                    estimate_bytes: int, counter: ByteCounter) -> None:
        with self.lock:
            self._account(self.clock())
            self._started_ids.add(row.id)
            self.jobs[worker_index] = JobView(worker_index, row, part, int(estimate_bytes or 0),
                                              counter, self.clock())

    def job_finished(self, worker_index: int, row: ManifestRow, part: str, status: str,
                     nbytes: Optional[int]) -> None:
        with self.lock:
            now = self.clock()
            self._account(now)
            job = self.jobs.pop(worker_index, None)
            if job is None:
                return
            self.finished_sent += job.counter.value
            if status == 'copied':
                self.copied_est += job.estimate
                self.copied_sent += nbytes or 0
                if job.estimate >= RATIO_MIN_ESTIMATE and nbytes:
                    self.ratio_est += job.estimate
                    self.ratio_sent += nbytes
            elif status == 'already_copied':
                self.skipped_est += job.estimate
            elif status == 'errored':
                self.errored_est += job.estimate
            self._sample(now)

    def table_finished(self, result: TableResult, progress: Progress) -> None:
        with self.lock:
            if result.status in self.counts:
                self.counts[result.status] += 1
            if result.status == 'errored':
                self.last_error = '%s: %s' % (result.source_table, _one_line(result.error))

    def tick(self, progress: Progress) -> None:
        with self.lock:
            now = self.clock()
            self._account(now)
            self._sample(now)
        self._maybe_write()

    def finished(self, report: RunReport, progress: Progress) -> None:
        with self.lock:
            self.finished_run = True
            self.jobs.clear()
        self._maybe_write(force=True)

    def _account(self, now: float) -> None:
        """Add the worker-seconds spent since the last event (before the jobs change)."""
        self._busy_total += max(0.0, now - self._busy_at) * len(self.jobs)
        self._busy_at = now

    def _sample(self, now: float) -> None:
        self.rate.add(now, self.streamed())
        self.busy.add(now, self._busy_total)

    # -- figures -----------------------------------------------------------------------
    def ratio(self) -> float:
        """Source bytes on disk per byte of COPY stream, from the big jobs done so far."""
        if not self.ratio_sent:
            return 1.0
        low, high = RATIO_BOUNDS
        return min(high, max(low, self.ratio_est / float(self.ratio_sent)))

    def job_done_est(self, job: JobView) -> float:
        return min(float(job.estimate), job.counter.value * self.ratio())

    def streamed(self) -> int:
        """COPY bytes streamed by this run so far (the basis of the rate)."""
        return self.finished_sent + sum(j.counter.value for j in self.jobs.values())

    def done_est(self) -> float:
        """Source bytes copied by this run: finished jobs plus the jobs in flight."""
        return self.copied_est + sum(self.job_done_est(j) for j in self.jobs.values())

    def completed_est(self) -> float:
        return self.done_est() + self.skipped_est + self.errored_est

    def remaining_est(self) -> float:
        return max(0.0, self.total_est - self.completed_est())

    def fraction(self) -> float:
        if self.total_est <= 0:
            done = sum(self.counts.values())
            return done / float(self.total_tables) if self.total_tables else 1.0
        return min(1.0, self.completed_est() / float(self.total_est))

    def worker_rate(self) -> Optional[float]:
        """Stream bytes per second of one busy worker, over the recent window."""
        rate, busy = self.rate.rate(), self.busy.rate()
        if not rate or not busy:
            return None
        return rate / busy

    def eta(self) -> Optional[float]:
        if self.finished_run or self.remaining_est() <= 0:
            return 0.0
        per_worker = self.worker_rate()
        if not per_worker:
            return None
        ratio = self.ratio()
        in_flight = [max(0.0, j.estimate - self.job_done_est(j)) / ratio for j in self.jobs.values()]
        pending = [size / ratio for key, size in self._estimates.items() if key not in self._started_ids]
        return simulate_finish(in_flight, pending, max(self.parallel, len(self.jobs)), per_worker)

    def elapsed(self) -> float:
        return self.clock() - self.started_at

    def workers(self) -> List[Dict[str, object]]:
        now = self.clock()
        out = []
        for index in sorted(self.jobs):
            job = self.jobs[index]
            done = self.job_done_est(job)
            out.append({
                'worker': index + 1, 'source_table': job.row.source_table,
                'target_table': job.row.target, 'date': job.row.date, 'part': job.part or None,
                'estimate_bytes': job.estimate, 'bytes_sent': job.counter.value,
                'fraction': round(done / job.estimate, 4) if job.estimate else None,
                'elapsed_s': round(now - job.started, 1),
            })
        return out

    def snapshot(self) -> Dict[str, object]:
        """Everything the fronts show, as plain JSON-able data."""
        with self.lock:
            done = sum(self.counts.values())
            eta = self.eta()
            rate = self.rate.rate()
            return {
                'updated_at': utc_now(), 'started_at': self.started_utc,
                'finished': self.finished_run, 'pid': os.getpid(),
                'elapsed_s': round(self.elapsed(), 1),
                'tables': dict(self.counts, total=self.total_tables, in_flight=len(self.jobs),
                               left=max(0, self.total_tables - done)),
                'bytes': {'total_estimate': self.total_est,
                          'copied_estimate': int(self.done_est()),
                          'already_copied_estimate': self.skipped_est,
                          'errored_estimate': self.errored_est,
                          'remaining_estimate': int(self.remaining_est()),
                          'streamed': self.streamed()},
                'fraction': round(self.fraction(), 4),
                'rate_bytes_per_s': None if rate is None else round(rate, 1),
                'eta_s': None if eta is None else round(eta, 1),
                'workers': self.workers(),
                'last_error': self.last_error,
            }

    def data_line(self) -> str:
        """The data-based figures in one line (appended to the old progress line)."""
        with self.lock:
            rate = self.rate.rate()
            flight = ', '.join('%s%s %d%%' % (j.row.source_table, ' (part)' if j.part else '',
                                              int(100 * self.job_done_est(j) / j.estimate)
                                              if j.estimate else 0)
                               for dummy, j in sorted(self.jobs.items()))
            return 'data %d%% (%s of %s), %s/s recent, ETA %s; in flight: %s' % (
                int(self.fraction() * 100), fmt_bytes(self.completed_est()),
                fmt_bytes(self.total_est), fmt_bytes(rate) if rate is not None else '-',
                fmt_duration(self.eta()), flight or 'none')

    # -- the snapshot file --------------------------------------------------------------
    def _maybe_write(self, force: bool = False) -> None:
        if not self.snapshot_file:
            return
        now = self.clock()
        if not force and self._snapshot_at is not None \
                and now - self._snapshot_at < self.snapshot_interval:
            return
        self._snapshot_at = now
        write_snapshot(self.snapshot_file, self.snapshot())


def simulate_finish(in_flight: List[float], pending: Iterable[float], workers: int,
                    per_worker_rate: float) -> float:
    """Seconds until the last job ends: the jobs in flight (bytes left each) go on, and each
    pending job (bytes, in order) starts on the first worker free; every worker streams
    ``per_worker_rate`` bytes per second."""
    free_at = [left / per_worker_rate for left in in_flight]
    free_at += [0.0] * max(0, workers - len(free_at))
    heapq.heapify(free_at)
    for size in pending:
        heapq.heappush(free_at, heapq.heappop(free_at) + size / per_worker_rate)
    return max(free_at) if free_at else 0.0


def _one_line(text: Optional[str]) -> str:
    return ' '.join((text or '').split())
