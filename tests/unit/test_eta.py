"""The recent-rate ETA on a synthetic clock: a few huge tables among many small ones."""

import pytest

from ansible_collections.icds.citus_migration.plugins.module_utils.copy.eta import RateWindow
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.live_state import LiveState
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.progress import Progress
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.table_copy import ByteCounter
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.store import ManifestRow

MB = 1 << 20


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_rate_is_unknown_until_enough_history():
    window = RateWindow(window_s=60, min_span_s=2)
    assert window.rate() is None and window.eta(100) is None
    window.add(0.0, 0)
    window.add(1.0, 10 * MB)
    assert window.rate() is None
    window.add(2.0, 20 * MB)
    assert window.rate() == pytest.approx(10 * MB)
    assert window.eta(50 * MB) == pytest.approx(5.0)
    assert window.eta(0) == 0.0


def test_rate_follows_the_recent_window_not_the_average_since_start():
    window = RateWindow(window_s=10, min_span_s=2)
    total = 0
    for t in range(0, 100):  # 100 s at 1 MB/s
        total += MB
        window.add(float(t), total)
    for t in range(100, 130):  # then 10 MB/s
        total += 10 * MB
        window.add(float(t), total)
    assert window.rate() == pytest.approx(10 * MB)  # the average since the start is 3.1 MB/s


def test_eta_counts_bytes_in_flight_and_ignores_already_copied_tables():
    """Two 1 GB tables and 100 small ones (1 MB each); the big ones are copied at 10 MB/s.
    At 50% of the run, the ETA is the time really left; a table count would say 98% done."""
    clock = Clock()
    rows = [ManifestRow(i, 't%d' % i, None, None, False, False) for i in range(102)]
    est = {0: (0, 1024 * MB), 1: (0, 1024 * MB)}
    est.update({i: (0, MB) for i in range(2, 102)})
    state = LiveState(clock=clock, window_s=30)
    state.started(Progress(est))
    # the small tables: half already copied (ledger), half copied at once
    for i in range(2, 102):
        counter = ByteCounter()
        state.job_started(0, rows[i], '', MB, counter)
        counter.value = MB
        state.job_finished(0, rows[i], '', 'already_copied' if i % 2 else 'copied', MB)
    assert state.fraction() == pytest.approx(100.0 / 2148, rel=1e-3)
    # the big ones, one after the other on one worker, at 10 MB/s
    real_total = 2 * 1024 / 10.0
    seen = {}
    for k in (0, 1):
        counter = ByteCounter()
        state.job_started(0, rows[k], '', 1024 * MB, counter)
        for step in range(1024):
            clock.now += 0.1
            counter.value += MB
            state.tick(None)
            seen[round(clock.now - 1000.0, 1)] = state.eta()
        state.job_finished(0, rows[k], '', 'copied', counter.value)
    half = real_total / 2
    assert seen[half] == pytest.approx(real_total - half, rel=0.05)
    state.finished(None, None)
    snap = state.snapshot()
    assert snap['eta_s'] == 0.0 and snap['fraction'] == 1.0 and snap['workers'] == []


def test_a_huge_table_left_alone_on_one_worker():
    """Two workers at 10 MB/s each: a 2 GB and a 1 GB table. At 60 s the 1 GB one is done
    within 42 s more, the 2 GB one within 145 s: the copy ends then, not when 1.9 GB are
    divided by the 20 MB/s both workers give together (94 s)."""
    clock = Clock()
    rows = [ManifestRow(i, 't%d' % i, None, None, False, False) for i in range(2)]
    state = LiveState(clock=clock, window_s=30, parallel=2)
    state.started(Progress({0: (0, 2048 * MB), 1: (0, 1024 * MB)}))
    counters = [ByteCounter(), ByteCounter()]
    for k in (0, 1):
        state.job_started(k, rows[k], '', (2048, 1024)[k] * MB, counters[k])
    for step in range(600):
        clock.now += 0.1
        for counter in counters:
            counter.value += MB
        state.tick(None)
    assert state.worker_rate() == pytest.approx(10 * MB)
    assert state.eta() == pytest.approx((2048 - 600) / 10.0, rel=0.01)
    assert state.rate.eta(state.remaining_est()) == pytest.approx((3072 - 1200) / 20.0, rel=0.01)


def test_tables_not_started_go_to_the_first_free_worker():
    from ansible_collections.icds.citus_migration.plugins.module_utils.copy.live_state import simulate_finish
    # in flight: 10 s and 30 s left; pending 20 s then 5 s of work: 10+20=30, then 30+5=35
    assert simulate_finish([100.0, 300.0], [200.0, 50.0], 2, 10.0) == pytest.approx(35.0)
    # an idle worker takes pending work at once
    assert simulate_finish([300.0], [200.0], 2, 10.0) == pytest.approx(30.0)
    assert simulate_finish([], [], 4, 10.0) == 0.0
