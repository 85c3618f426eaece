"""The runner's lock branches, driven on purpose: a table whose advisory lock another session
holds is deferred (the rest is copied meanwhile) and copied once the lock is free; a
whole-table job that then finds a split plan stored meanwhile adopts it and copies the parts."""

import json

from ansible_collections.icds.citus_migration.plugins.module_utils.copy import ledger
from ansible_collections.icds.citus_migration.plugins.module_utils.copy.table_copy import split_ranges
from tests.integration.copy_helpers import (
    MANIFEST_ROWS, cli_conn_args, fingerprint, load_nasty, make_old_manifest, manifest_flags, run_cli)
from tests.integration.runner_watch import (
    LEDGER, ledger_rows, source_id, table_lock_held, tables_by_runner, wait_for, waiting_on)

HELD = 'agg_awc_2020-01-01_1'


def _summary(out: str) -> dict:
    return json.loads(out[out.index('{'):])


def _everything_else_copied_and_held_waiting(dbs) -> bool:
    copied = {t for t, dummy, dummy2 in ledger_rows(dbs)}
    return (waiting_on(dbs, 'advisory') == 1
            and copied == {r[0] for r in MANIFEST_ROWS} - {HELD})


def test_a_table_locked_elsewhere_is_deferred_then_copied_once(dbs, tmp_path):
    load_nasty(dbs, rows=200)
    manifest = make_old_manifest(str(tmp_path / 'm.db'), MANIFEST_ROWS)
    with table_lock_held(dbs, source_id(dbs), HELD):
        proc = run_cli(['migrate', '--yes', '--json', '--parallel', '2'] + cli_conn_args(dbs) + [manifest],
                       background=True)
        # busy: deferred behind the other tables, then waited for (not copied, not errored)
        wait_for('every other table copied and %s waiting for its lock' % HELD,
                 lambda: _everything_else_copied_and_held_waiting(dbs), [proc])
        assert manifest_flags(manifest)[HELD] == (None, None)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, (out, err)
    summary = _summary(out)
    assert (summary['copied'], summary['already_copied'], summary['errored']) == (len(MANIFEST_ROWS), 0, 0)
    assert [(t, p) for t, p, dummy in ledger_rows(dbs)].count((HELD, '')) == 1
    assert tables_by_runner(dbs, [proc]) == {0: {r[0] for r in MANIFEST_ROWS}}
    assert fingerprint(dbs.tgt_sql, HELD) == fingerprint(dbs.src_sql, HELD)
    assert set(manifest_flags(manifest).values()) == {(1, None)}


def _source_blocks(dbs, table: str) -> int:
    return int(dbs.src_sql("SELECT pg_relation_size('\"%s\"') / current_setting('block_size')::int"
                           % table).strip())


def test_a_whole_table_job_adopts_a_split_plan_stored_meanwhile(dbs, tmp_path):
    load_nasty(dbs, rows=1500)
    manifest = make_old_manifest(str(tmp_path / 'm.db'), MANIFEST_ROWS)
    sid = source_id(dbs)
    parts = split_ranges(_source_blocks(dbs, HELD), 3)
    assert len(parts) == 3
    with table_lock_held(dbs, sid, HELD) as holder:
        # the default threshold (1GB): this runner plans every table as a whole copy
        proc = run_cli(['migrate', '--yes', '--json', '--parallel', '2'] + cli_conn_args(dbs) + [manifest],
                       background=True)
        wait_for('every other table copied and %s waiting for its lock' % HELD,
                 lambda: _everything_else_copied_and_held_waiting(dbs), [proc])
        # meanwhile another runner (a smaller split threshold), holding the lock, plans it in parts
        with holder.cursor() as cur:
            ledger.record_split_plan(cur, LEDGER, sid, HELD, parts, 'another-runner:1')
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, (out, err)
    mine = [(p, r) for t, p, r in ledger_rows(dbs) if t == HELD]
    assert sorted(p for p, dummy in mine) == sorted(parts)  # in the stored parts, not whole
    assert {r.rsplit(':', 1)[1] for dummy, r in mine} == {str(proc.pid)}
    held = [t for t in _summary(out)['tables'] if t['source_table'] == HELD]
    assert len(held) == 1 and held[0]['status'] == 'copied', held
    assert fingerprint(dbs.tgt_sql, HELD) == fingerprint(dbs.src_sql, HELD)
    assert set(manifest_flags(manifest).values()) == {(1, None)}
    # the other runner's parts are kept; this runner read them under a snapshot it exported
    # (ctid parts of a table without a usable key share one snapshot), so the plan now names it
    stored, runner, snapshot = dbs.tgt_sql(
        "SELECT array_to_string(parts, ' '), runner, snapshot IS NOT NULL "
        'FROM icds_citus_migration.copy_split_plan').strip().split('|')
    assert stored.split(' ') == parts
    assert (runner.rsplit(':', 1)[1], snapshot) == (str(proc.pid), 't')
