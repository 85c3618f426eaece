"""SIGKILL the runner at seeded random moments, re-run with --retry-errors, check that
nothing was lost, nothing copied twice and the manifest tells the truth.

``FAULT_RUNS`` seeds (``FAULT_SEED_BASE`` + 0..n-1) are run; each seed picks the moment,
the parallelism, whether the big table is split into parts, and whether the first re-run
is killed too. Every run is appended to tests/faults/results/faults.jsonl.
"""

import os
import random
import signal
import time

import pytest

from tests.faults.common import (
    BIG, check_final, check_truthful, complete_in_ledger, ledger_state, recorded,
    release_throttle, throttle_big, unthrottle, wait_for_backends_gone, wait_for_target_copy)
from tests.faults.conftest import FAULT_RUNS, FAULT_SEED_BASE
from tests.integration.copy_helpers import cli_conn_args, run_cli

SEEDS = [FAULT_SEED_BASE + i for i in range(FAULT_RUNS)]


def _start(pair, extra, env=None):
    return run_cli(['migrate', '--yes'] + extra + cli_conn_args(pair) + [pair.manifest],
                   env=env, background=True)


def _kill_after(proc, delay: float) -> bool:
    """SIGKILL after ``delay`` seconds; False if the run had already ended."""
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    if proc.poll() is not None:
        return False
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return True


@pytest.mark.slow
@pytest.mark.parametrize('seed', SEEDS, ids=lambda s: 'seed=%d' % s)
def test_sigkill_at_a_random_moment(world, pair, seed):
    rnd = random.Random(seed)
    parallel = rnd.choice([1, 2, 3])
    split = rnd.choice(['1GB', '8MB'])  # 8MB: the big table is copied in parts
    how = rnd.choice(['timer', 'timer', 'timer', 'before_target_commit', 'after_target_commit'])
    delay = round(rnd.uniform(0.0, 0.8), 3)  # seconds after the big table's COPY started
    kill_rerun = rnd.random() < 0.3
    rerun_delay = round(rnd.uniform(0.0, 1.0), 3)
    extra = ['--parallel', str(parallel), '--split-threshold', split, '--segment-size', '4MB']
    with recorded('test_sigkill_at_a_random_moment', seed, 'sigkill', parallel=parallel,
                  split_threshold=split, how=how, delay_s=delay, kill_rerun=kill_rerun,
                  rerun_delay_s=rerun_delay) as entry:
        if how == 'timer':
            # BIG takes >= 6 s to copy (target-side throttle): the kill, at most 0.8 s after
            # its COPY started, always lands while it is in progress, idle machine or not
            throttle_big(pair)
            proc = _start(pair, extra)
            wait_for_target_copy(pair, proc)
            entry['killed'] = _kill_after(proc, delay)
            assert entry['killed'], 'the run ended before the kill, %.3f s into the copy' % delay
            release_throttle(pair)  # the target backend drains what was sent at full speed
        else:  # the engine kills itself at that point of the first table to get there
            proc = _start(pair, extra, env={'ICDS_MIGRATION_FAULT': how})
            proc.communicate(timeout=300)
            entry['killed'] = proc.returncode == -signal.SIGKILL
            assert entry['killed'], 'the fault point %s was never reached' % how
        wait_for_backends_gone(pair)
        entry.update(check_truthful(world, pair))
        rcs = []
        if kill_rerun:
            # throttled too: while BIG (or a part of it) is left, the re-run is still copying
            # it when the kill comes, at most 1 s after the re-run started
            big_left = not complete_in_ledger(BIG, *ledger_state(pair))
            throttle_big(pair)
            proc = _start(pair, extra + ['--retry-errors'])
            entry['rerun_killed'] = _kill_after(proc, rerun_delay)
            release_throttle(pair)
            rcs.append(proc.returncode)
            assert entry['rerun_killed'] or not big_left, 'the re-run ended before the kill'
            wait_for_backends_gone(pair)
            check_truthful(world, pair)
        unthrottle(pair)
        res = run_cli(['migrate', '--yes', '--retry-errors'] + extra + cli_conn_args(pair)
                      + [pair.manifest], timeout=300)
        rcs.append(res.returncode)
        entry['rerun_rcs'] = rcs
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        check_final(world, pair)
