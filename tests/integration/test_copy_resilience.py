"""Crashes, concurrent runners and bad input: nothing lost, nothing copied twice."""

import os
import signal

import psycopg2
import pytest

from tests.integration.copy_helpers import (
    MANIFEST_ROWS, cli_conn_args, fingerprint, load_nasty, make_old_manifest, manifest_flags,
    run_cli, union_fingerprint)
from tests.integration.runner_watch import (
    copies_in_flight, tables_by_runner, tables_locked, wait_for, waiting_on)

BIG = 'big-table'


def _ledger_count(dbs) -> int:
    return int(dbs.tgt_sql('SELECT count(*) FROM icds_citus_migration.copy_ledger').strip())


# the target's COPY into BIG stops at this row until the test lets it go (a trigger waits
# for an advisory lock the test holds): the kill lands mid-copy, rows already sent, always
HOLD_AT_ROW = 1000
HOLD_KEY = 7310  # a one-key advisory lock, apart from the runners' two-key ones
HOLD_TRIGGER = (
    'CREATE FUNCTION hold_copy() RETURNS trigger LANGUAGE plpgsql AS '
    '$$BEGIN PERFORM pg_advisory_xact_lock_shared(%d); RETURN NEW; END$$;'
    'CREATE TRIGGER hold_copy BEFORE INSERT ON "%s" FOR EACH ROW WHEN (NEW.id = %d) '
    'EXECUTE FUNCTION hold_copy()' % (HOLD_KEY, BIG, HOLD_AT_ROW))


@pytest.fixture
def big(dbs, tmp_path):
    """One table whose copy a test can stop half-way (HOLD_TRIGGER), and a small one."""
    ddl = 'CREATE TABLE "%s" (id bigint, payload text, at timestamptz)' % BIG
    dbs.src_sql(ddl)
    dbs.tgt_sql(ddl)
    dbs.src_sql("INSERT INTO \"%s\" SELECT g, repeat(md5(g::text), 4), now() "
                "FROM generate_series(1, 20000) g" % BIG)
    dbs.src_sql('CREATE TABLE small (id int)')
    dbs.tgt_sql('CREATE TABLE small (id int)')
    dbs.src_sql('INSERT INTO small SELECT generate_series(1, 100)')
    dbs.manifest = make_old_manifest(str(tmp_path / 'm.db'), [('small', None, None), (BIG, None, None)])
    return dbs


def _rows_in_flight(dbs) -> int:
    """Rows the target's COPY into BIG has taken in its open transaction (0: none running)."""
    return int(dbs.tgt_sql("SELECT coalesce(sum(tuples_processed), 0) FROM pg_stat_progress_copy "
                           "WHERE relid = '\"%s\"'::regclass" % BIG).strip())


def test_sigkill_mid_copy_then_rerun(big):
    big.tgt_sql(HOLD_TRIGGER)
    holder = psycopg2.connect(**big.target.libpq_kwargs())
    holder.autocommit = True
    try:
        holder.cursor().execute('SELECT pg_advisory_lock(%s)', (HOLD_KEY,))
        proc = run_cli(['migrate', '--yes'] + cli_conn_args(big) + [big.manifest], background=True)
        wait_for('the copy of %s held at row %d' % (BIG, HOLD_AT_ROW),
                 lambda: waiting_on(big, 'advisory') == 1, [proc])
        assert _rows_in_flight(big) == HOLD_AT_ROW - 1
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        holder.close()  # the held COPY goes on, finds its client gone and rolls back
    wait_for('the killed runner\'s backends gone', lambda: big.tgt_sql(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND query LIKE 'COPY %%FROM STDIN%%'").strip() == '0')
    assert big.tgt_sql('SELECT count(*) FROM "%s"' % BIG).strip() == '0'
    assert manifest_flags(big.manifest)[BIG] == (None, None)
    status = run_cli(['status', big.manifest, 'list'])
    assert 'running' in status.stdout  # the killed run left its mark; status shows it
    big.tgt_sql('DROP TRIGGER hold_copy ON "%s"' % BIG)
    res = run_cli(['migrate', '--yes'] + cli_conn_args(big) + [big.manifest])
    assert res.returncode == 0, res.stderr
    assert fingerprint(big.tgt_sql, BIG) == fingerprint(big.src_sql, BIG)
    assert fingerprint(big.tgt_sql, 'small') == fingerprint(big.src_sql, 'small')
    assert _ledger_count(big) == 2


@pytest.mark.parametrize('point', ['after_target_commit', 'before_target_commit'])
def test_crash_around_the_target_commit(dbs, tmp_path, point):
    load_nasty(dbs, rows=50)
    manifest = make_old_manifest(str(tmp_path / 'm.db'), MANIFEST_ROWS)
    res = run_cli(['migrate', '--yes'] + cli_conn_args(dbs) + [manifest],
                  env={'ICDS_MIGRATION_FAULT': point})
    assert res.returncode == -signal.SIGKILL
    first = MANIFEST_ROWS[0][0]
    assert manifest_flags(manifest)[first] == (None, None)  # the manifest never heard of it
    committed = 1 if point == 'after_target_commit' else 0
    assert _ledger_count(dbs) == committed
    res = run_cli(['migrate', '--yes', '--json'] + cli_conn_args(dbs) + [manifest])
    assert res.returncode == 0, res.stderr
    assert '"already_copied": %d' % committed in res.stdout
    assert fingerprint(dbs.tgt_sql, first) == fingerprint(dbs.src_sql, first)
    assert fingerprint(dbs.tgt_sql, 'child_health_monthly') == union_fingerprint(
        dbs.src_sql, ['child_health_monthly', 'child_health_monthly_2020-01-01',
                      'child_health_monthly_2020-02-01'])
    assert set(manifest_flags(manifest).values()) == {(1, None)}


@pytest.mark.parametrize('shared_manifest', [True, False])
def test_two_runners_at_once_copy_each_table_once(dbs, tmp_path, shared_manifest):
    load_nasty(dbs, rows=2000)
    first = make_old_manifest(str(tmp_path / 'a.db'), MANIFEST_ROWS)
    second = first if shared_manifest else make_old_manifest(str(tmp_path / 'b.db'), MANIFEST_ROWS)
    targets = sorted({target or source for source, dummy, target in MANIFEST_ROWS})
    with tables_locked(dbs, targets):  # every COPY waits here: the runners overlap for sure
        procs = [run_cli(['migrate', '--yes', '--parallel', '2'] + cli_conn_args(dbs) + [path],
                         background=True) for path in (first, second)]
        wait_for('both runners copying at once', lambda: len(copies_in_flight(dbs, procs)) == 2, procs)
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert _ledger_count(dbs) == len(MANIFEST_ROWS)
    by_runner = tables_by_runner(dbs, procs)
    assert sorted(by_runner) == [0, 1], by_runner  # each runner copied at least one table
    assert sum(len(t) for t in by_runner.values()) == len(MANIFEST_ROWS)  # and no table twice
    for table in ('agg_awc_2020-01-01_1', 'agg_awc_2020-02-01_1', 'agg_awc'):
        assert fingerprint(dbs.tgt_sql, table) == fingerprint(dbs.src_sql, table)
    assert fingerprint(dbs.tgt_sql, 'child_health_monthly') == union_fingerprint(
        dbs.src_sql, ['child_health_monthly', 'child_health_monthly_2020-01-01',
                      'child_health_monthly_2020-02-01'])
    for path in {first, second}:
        assert set(manifest_flags(path).values()) == {(1, None)}


# -- bad input: one line naming the problem, exit 2, nothing written ----------------------

def _one_line_error(res, *needles):
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith('migrate_tables: error: ')
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def small(dbs, tmp_path):
    load_nasty(dbs, rows=10)
    dbs.manifest = make_old_manifest(str(tmp_path / 'm.db'), MANIFEST_ROWS)
    return dbs


def _nothing_written(dbs):
    assert set(manifest_flags(dbs.manifest).values()) == {(None, None)}
    assert dbs.tgt_sql('SELECT count(*) FROM agg_awc').strip() == '0'
    assert dbs.tgt_sql('SELECT count(*) FROM child_health_monthly').strip() == '0'


def test_missing_manifest(small, tmp_path):
    _one_line_error(run_cli(['migrate', '--yes'] + cli_conn_args(small) + [str(tmp_path / 'nope.db')]),
                    'manifest not found', 'nope.db')


def test_file_that_is_not_a_manifest(small, tmp_path):
    path = tmp_path / 'readme.txt'
    path.write_text('not a database\n' * 200)
    _one_line_error(run_cli(['migrate', '--yes'] + cli_conn_args(small) + [str(path)]),
                    'is not a migration manifest')
    assert path.read_text() == 'not a database\n' * 200


@pytest.mark.parametrize('flag', ['--start-date', '--end-date'])
def test_invalid_date(small, flag):
    _one_line_error(run_cli(['migrate', '--yes', flag, '2020-02-31'] + cli_conn_args(small) + [small.manifest]),
                    flag, '2020-02-31')
    _nothing_written(small)


def test_unknown_table(small):
    _one_line_error(run_cli(['migrate', '--yes', '--table', 'no_such'] + cli_conn_args(small) + [small.manifest]),
                    "'no_such' is not in the manifest")
    _nothing_written(small)


def test_already_migrated_table(small):
    assert run_cli(['migrate', '--yes', '--table', 'agg_awc'] + cli_conn_args(small) + [small.manifest]).returncode == 0
    _one_line_error(run_cli(['migrate', '--yes', '--table', 'agg_awc'] + cli_conn_args(small) + [small.manifest]),
                    "'agg_awc' is already migrated")


@pytest.mark.parametrize('value', ['0', '-2'])
def test_bad_parallel(small, value):
    _one_line_error(run_cli(['migrate', '--yes', '--parallel', value] + cli_conn_args(small) + [small.manifest]),
                    '--parallel')
    _nothing_written(small)


def test_unreachable_host(small):
    args = cli_conn_args(small)
    args[args.index('--target-port') + 1] = '1'
    _one_line_error(run_cli(['migrate', '--yes'] + args + [small.manifest]),
                    'cannot connect to the target', ':1/')
    _nothing_written(small)


def test_wrong_password_is_never_echoed(small):
    small.src_sql("CREATE ROLE reader LOGIN PASSWORD 'right-secret'")
    small.src_sql('GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader')
    args = cli_conn_args(small)
    args[args.index('-U') + 1] = 'reader'
    res = run_cli(['migrate', '--yes', '--source-password-env', 'SRC_PW'] + args + [small.manifest],
                  env={'SRC_PW': 'wrong-secret-123'})
    line = _one_line_error(res, 'cannot connect to the source', 'password authentication failed')
    assert 'wrong-secret-123' not in res.stdout + res.stderr
    _nothing_written(small)
    res = run_cli(['migrate', '--yes', '--source-password-env', 'SRC_PW'] + args + [small.manifest],
                  env={'SRC_PW': 'right-secret'})
    assert res.returncode == 0, res.stderr
    assert 'right-secret' not in res.stdout + res.stderr + line
    small.src_sql('DROP OWNED BY reader; DROP ROLE reader')


def test_missing_target_table(small):
    small.tgt_sql('DROP TABLE "agg_awc_2020-02-01_1"')
    _one_line_error(run_cli(['migrate', '--yes'] + cli_conn_args(small) + [small.manifest]),
                    "target table 'agg_awc_2020-02-01_1' does not exist", 'nothing was copied')
    _nothing_written(small)


def test_column_mismatch(small):
    small.tgt_sql('ALTER TABLE "agg_awc" DROP COLUMN note')
    _one_line_error(run_cli(['migrate', '--yes'] + cli_conn_args(small) + [small.manifest]),
                    "target table 'agg_awc' has no column(s) 'note'")
    _nothing_written(small)
