#!/usr/bin/env python3
"""How right is the ETA a copy shows? A measurement, not a test.

A copy whose data sits mostly in a few big tables (as ICDS's does) runs through the CLI, off a
terminal, against throwaway servers; the target is throttled by a trigger (a steady rate, so
that a few hundred MB last as long as a watched copy does). While it runs, the snapshot file
``<manifest>.live.json`` is read every 0.2 s. Afterwards, at 25%, 50% and 75% of the run's
elapsed time, the ETA shown then is compared with the time that was really left, and so is
the ETA a count of tables gives (the old progress bar's).

    .venv/bin/python benchmarks/eta_accuracy.py [--big-rows 1500000,1000000,500000]
        [--small-tables 200] [--small-rows 200,2000,20000] [--parallel 2] [--ms-per-10k 200]
        [--runs 1] [--slow-all]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tools.testkit.pg_cluster import PgServer  # noqa: E402  pylint: disable=wrong-import-position
from tools.testkit.skewed_dataset import load_skewed, skewed_manifest  # noqa: E402

CLI = os.path.join(ROOT, 'bin', 'migrate_tables')


class Pair:
    def __init__(self, source: PgServer, target: PgServer, db: str):
        self.source, self.target, self.db = source, target, db

    def src_sql(self, sql: str) -> str:
        return self.source.psql(sql, self.db)

    def tgt_sql(self, sql: str) -> str:
        return self.target.psql(sql, self.db)


def one_run(pair: Pair, args, workdir: str, run: int) -> List[Tuple[float, Optional[float], Optional[float]]]:
    """(elapsed, ETA shown, ETA by table count) samples, and the run's total elapsed last."""
    manifest = os.path.join(workdir, 'run%d.db' % run)
    db = 'eta%d' % run
    pair.db = 'postgres'
    pair.src_sql('CREATE DATABASE %s' % db)
    pair.tgt_sql('CREATE DATABASE %s' % db)
    pair.db = db
    rows = load_skewed(pair, [int(n) for n in args.big_rows.split(',')], small_tables=args.small_tables,
                       small_rows=[int(n) for n in args.small_rows.split(',')],
                       big_ms_per_10k_rows=args.ms_per_10k, slow_all=args.slow_all)
    skewed_manifest(manifest, rows)
    cmd = [sys.executable, CLI, 'migrate', '--yes', '--parallel', str(args.parallel),
           '--progress-interval', '3600',
           '-D', db, '-O', '127.0.0.1', '-U', 'postgres', '--source-port', str(pair.source.port),
           '-d', db, '-o', '127.0.0.1', '-u', 'postgres', '--target-port', str(pair.target.port),
           manifest]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples = []
    live = manifest + '.live.json'
    final = None
    while True:
        done = proc.poll() is not None
        try:
            with open(live) as handle:
                snap = json.load(handle)
        except (OSError, ValueError):
            snap = None
        if snap:
            t = snap['tables']
            finished = t['copied'] + t['already_copied'] + t['errored']
            by_count = (snap['elapsed_s'] * (t['total'] - finished) / finished) if finished else None
            if os.environ.get("ETA_DEBUG") and (not samples or samples[-1][0] != snap["elapsed_s"]):
                print(snap["elapsed_s"], snap["fraction"], snap["bytes"]["remaining_estimate"], snap["bytes"]["streamed"], snap["rate_bytes_per_s"], snap["eta_s"], snap["tables"]["left"], [(w["source_table"][-8:], w["bytes_sent"], w["estimate_bytes"]) for w in snap["workers"]])
            if not samples or samples[-1][0] != snap["elapsed_s"]:
                samples.append((snap['elapsed_s'], snap['eta_s'], by_count))
            if snap['finished']:
                final = snap['elapsed_s']
        if done:
            break
        time.sleep(0.2)
    if proc.returncode != 0 or final is None:
        raise SystemExit('the copy failed (%s): %s' % (proc.returncode, proc.stderr.read()[-2000:]))
    return samples + [(final, 0.0, 0.0)]


def at(samples, when: float):
    """The last sample at or before ``when``."""
    best = None
    for sample in samples:
        if sample[0] <= when:
            best = sample
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--big-rows', default='1500000,1000000,500000')
    parser.add_argument('--small-tables', type=int, default=200)
    parser.add_argument('--small-rows', default='200,2000,20000',
                        help='rows of the small tables, cycled over them')
    parser.add_argument('--parallel', type=int, default=2)
    parser.add_argument('--ms-per-10k', type=int, default=200)
    parser.add_argument('--runs', type=int, default=1)
    parser.add_argument('--slow-all', action='store_true',
                        help='slow the target for every table, not only the big ones')
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix='icds-eta-')
    source = PgServer('eta-src').init().start()
    target = PgServer('eta-tgt').init().start()
    try:
        pair = Pair(source, target, 'postgres')
        for run in range(args.runs):
            samples = one_run(pair, args, workdir, run)
            total = samples[-1][0]
            print('run %d: %.1f s, big tables %s rows, %d small (%s rows), --parallel %d, '
                  'target slowed %d ms per 10k rows for %s' % (
                      run + 1, total, args.big_rows, args.small_tables, args.small_rows, args.parallel,
                      args.ms_per_10k, 'every table' if args.slow_all else 'the big tables'))
            for share in (0.25, 0.5, 0.75):
                sample = at(samples, total * share)
                if sample is None:
                    continue
                real = total - sample[0]

                def err(eta):
                    return 'n/a' if eta is None else '%.1f s (%+.0f%%)' % (eta, 100.0 * (eta - real) / real)
                print('  at %2d%% (%.1f s): %.1f s really left; data ETA %s; table-count ETA %s' % (
                    share * 100, sample[0], real, err(sample[1]), err(sample[2])))
    finally:
        source.destroy()
        target.destroy()
    return 0


if __name__ == '__main__':
    sys.exit(main())
