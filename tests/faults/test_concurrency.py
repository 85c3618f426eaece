"""Four runners at once, on one manifest or on separate copies of it, against one target:
every table copied exactly once (the target ledger and locks decide). A manifest locked by
another process or damaged gives one clear line, not a traceback."""

import json
import os
import sqlite3

import pytest

from tests.faults.common import ROWS, check_final, ledger_state, recorded
from tests.integration.copy_helpers import cli_conn_args, make_old_manifest, run_cli
from tests.integration.runner_watch import copies_in_flight, tables_by_runner, tables_locked, wait_for

RUNNERS = 4


def _summary(out: str) -> dict:
    if 'Nothing to migrate' in out:  # started after the others had copied everything
        return {'copied': 0}
    return json.loads(out[out.index('{'):])


@pytest.mark.slow
@pytest.mark.parametrize('shared', [True, False], ids=['same-manifest', 'manifest-copies'])
@pytest.mark.parametrize('split', ['1GB', '8MB'])
def test_four_runners_copy_each_table_once(world, pair, tmp_path, shared, split):
    paths = [pair.manifest] * RUNNERS if shared else [pair.manifest] + [
        make_old_manifest(str(tmp_path / ('copy%d.db' % i)), ROWS) for i in range(1, RUNNERS)]
    with recorded('test_four_runners_copy_each_table_once', None, '4 concurrent runners',
                  shared=shared, split_threshold=split) as entry:
        targets = sorted({target or source for source, dummy, target in ROWS})
        with tables_locked(pair, targets):  # every COPY waits here until all runners have one
            procs = [run_cli(['migrate', '--yes', '--json', '--parallel', '2', '--split-threshold', split,
                              '--segment-size', '8MB']
                             + cli_conn_args(pair) + [path], background=True) for path in paths]
            wait_for('all %d runners copying at once' % RUNNERS,
                     lambda: len(copies_in_flight(pair, procs)) == RUNNERS, procs)
        outs = [p.communicate(timeout=600) for p in procs]
        assert [p.returncode for p in procs] == [0] * RUNNERS, outs
        by_runner = tables_by_runner(pair, procs)
        entry['tables_per_runner'] = {i: len(t) for i, t in by_runner.items()}
        assert sorted(by_runner) == list(range(RUNNERS)), by_runner  # each copied something
        summaries = [_summary(out) for out, _ in outs]
        entry['copied_per_runner'] = [s['copied'] for s in summaries]
        # no table copied by two runners: per table, at most one runner reports a whole copy
        if split == '1GB':
            assert sum(s['copied'] for s in summaries) == len(ROWS), entry['copied_per_runner']
        entries, plans = ledger_state(pair)
        assert sum(len(p) for p in entries.values()) == sum(
            len(plans.get(t, [''])) for t in entries)
        for path in set(paths):
            pair.manifest = path
            check_final(world, pair)


@pytest.fixture
def small_manifest(tmp_path):
    rows = [('table_%05d_%s' % (i, 'x' * 40), '2020-01-01', None) for i in range(3000)]
    path = make_old_manifest(str(tmp_path / 'm.db'), rows)
    res = run_cli(['status', path, 'stats'])  # a real manifest of this tool, as used
    assert res.returncode == 0
    return path


def _one_line(res, *needles):
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert 'Traceback' not in res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith('migrate_tables: error: '), res.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def _commands(pair, path):
    return [['status', path, 'stats'], ['status', path, 'list'],
            ['migrate', '--yes'] + cli_conn_args(pair) + [path],
            ['migrate', '--dry-run'] + cli_conn_args(pair) + [path]]


def test_locked_manifest(world, pair):
    holder = sqlite3.connect(pair.manifest, isolation_level=None)
    holder.execute('BEGIN EXCLUSIVE')
    try:
        for args in _commands(pair, pair.manifest):
            res = run_cli(args, env={'ICDS_MIGRATION_MANIFEST_TIMEOUT': '1'})
            _one_line(res, 'manifest %s is locked by another process (waited 1s)' % pair.manifest)
    finally:
        holder.execute('ROLLBACK')
        holder.close()
    assert pair.tgt_sql('SELECT count(*) FROM agg_awc').strip() == '0'


@pytest.mark.parametrize('damage', ['truncated', 'garbage-in-the-middle', 'garbage-header'])
def test_damaged_manifest(world, pair, small_manifest, damage):
    size = os.path.getsize(small_manifest)
    with open(small_manifest, 'r+b') as handle:
        if damage == 'truncated':
            handle.truncate(size // 2)
        elif damage == 'garbage-in-the-middle':
            handle.seek(size // 2)
            handle.write(bytes(range(256)) * 32)
        else:
            handle.write(b'\xff' * 100)
    before = open(small_manifest, 'rb').read()
    expected = ('is not a migration manifest (not a SQLite database: file is not a database)'
                if damage == 'garbage-header' else
                'manifest %s is damaged (database disk image is malformed' % small_manifest)
    for args in _commands(pair, small_manifest):
        _one_line(run_cli(args), expected)
    assert open(small_manifest, 'rb').read() == before  # never "repaired" behind our back
