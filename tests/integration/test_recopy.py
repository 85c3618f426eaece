"""Drift catch-up: rows written to the source after the copy are detected by compare and
re-copied (``migrate --recopy`` / ``--recopy-drifted``), each table's target rows replaced
in one transaction; siblings untouched; a failed re-copy leaves the old rows."""

import json

import psycopg2
import pytest

from tests.integration.copy_helpers import (
    MANIFEST_ROWS, WEIRD, cli_conn_args, fingerprint, load_nasty, make_old_manifest,
    manifest_flags, run_cli)
from tests.module_runner import run_module
from ansible_collections.icds.citus_migration.plugins.module_utils.validate.compare import compare_manifest
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.store import Manifest

CHILD1, CHILD2 = 'child_health_monthly_2020-01-01', 'child_health_monthly_2020-02-01'
SLICE1 = "WHERE month = '2020-01-01'"
SLICE2 = "WHERE month = '2020-02-01'"
PARENT_OWN = 'WHERE month IS NULL'


def drift(dbs, manifest):
    """Names of the manifest rows whose target rows differ from the source."""
    rows = Manifest.open(manifest, readonly=True).rows()
    src, tgt = (psycopg2.connect(**p.libpq_kwargs()) for p in (dbs.source, dbs.target))
    try:
        results = compare_manifest(src, tgt, rows, checksums=True, family_rows=rows)
    finally:
        src.close()
        tgt.close()
    assert not [r.error for r in results if r.error]
    return sorted(r.source_table for r in results if not r.match)


def ledger_rows(dbs):
    return dbs.tgt_sql('SELECT source_table FROM icds_citus_migration.copy_ledger '
                       'ORDER BY 1').splitlines()


@pytest.fixture
def copied(dbs, tmp_path):
    load_nasty(dbs, rows=60)
    dbs.manifest = make_old_manifest(str(tmp_path / 'm.db'), MANIFEST_ROWS)
    res = run_cli(['migrate', '--yes'] + cli_conn_args(dbs) + [dbs.manifest])
    assert res.returncode == 0, res.stderr
    assert drift(dbs, dbs.manifest) == []
    return dbs


def _write_after_the_copy(dbs):
    w = WEIRD.replace('"', '""')
    dbs.src_sql('INSERT INTO "%s" (id, label) VALUES (9001, \'late row\')' % w)
    dbs.src_sql('INSERT INTO "%s" (id, label, month) VALUES (9002, \'late\', DATE \'2020-01-01\')' % CHILD1)
    dbs.src_sql('UPDATE "agg_awc_2020-02-01_1" SET label = \'changed later\' WHERE id = 3')


def test_recopy_drifted_replaces_exactly_the_drifted_slices(copied):
    before = {'sibling': fingerprint(copied.tgt_sql, 'child_health_monthly', SLICE2),
              'parent_own': fingerprint(copied.tgt_sql, 'child_health_monthly', PARENT_OWN),
              'agg_awc': fingerprint(copied.tgt_sql, 'agg_awc')}
    _write_after_the_copy(copied)
    assert drift(copied, copied.manifest) == sorted([WEIRD, CHILD1, 'agg_awc_2020-02-01_1'])

    dry = run_cli(['migrate', '--dry-run', '--recopy-drifted'] + cli_conn_args(copied) + [copied.manifest])
    assert dry.returncode == 0, dry.stderr
    # these tables have no usable key: compared as a whole, re-copied whole when they differ
    assert ('[dry run] %s -> child_health_monthly: whole (no usable key) compared, 1 differing, '
            '%s rows to repair' % (CHILD1, copied.src_sql('SELECT count(*) FROM "%s"' % CHILD1).strip())
            ) in dry.stdout
    assert '3 drifted tables would be repaired; nothing was changed' in dry.stdout
    assert drift(copied, copied.manifest) != []  # the dry run changed nothing

    res = run_cli(['migrate', '--yes', '--recopy-drifted', '--json'] + cli_conn_args(copied) + [copied.manifest])
    assert res.returncode == 0, res.stdout + res.stderr
    summary = json.loads(res.stdout[res.stdout.index('{'):res.stdout.rindex('}') + 1])
    # keyless tables: repaired row by row (matched by row hash) in a plain target table
    assert (summary['recopied'] + summary['repaired'], summary['errored']) == (3, 0)
    assert drift(copied, copied.manifest) == []
    assert fingerprint(copied.tgt_sql, 'child_health_monthly', SLICE1) == fingerprint(copied.src_sql, CHILD1)
    # siblings untouched
    assert fingerprint(copied.tgt_sql, 'child_health_monthly', SLICE2) == before['sibling']
    assert fingerprint(copied.tgt_sql, 'child_health_monthly', PARENT_OWN) == before['parent_own']
    assert fingerprint(copied.tgt_sql, 'agg_awc') == before['agg_awc']
    assert ledger_rows(copied) == sorted(r[0] for r in MANIFEST_ROWS)
    assert set(manifest_flags(copied.manifest).values()) == {(1, None)}
    res = run_cli(['migrate', '--yes', '--recopy-drifted'] + cli_conn_args(copied) + [copied.manifest])
    assert res.returncode == 0 and 'Nothing to re-copy' in res.stdout


def test_recopy_named_tables_including_a_drop_child_parent(copied):
    copied.src_sql("INSERT INTO child_health_monthly (id, label) VALUES (7001, 'parent late')")
    copied.src_sql("INSERT INTO \"%s\" (id, label, month) VALUES (7002, 'c2 late', DATE '2020-02-01')" % CHILD2)
    kids = fingerprint(copied.tgt_sql, 'child_health_monthly', SLICE1)
    res = run_cli(['migrate', '--yes'] + cli_conn_args(copied) + [copied.manifest, '--recopy',
                                                                    'child_health_monthly', CHILD2])
    assert res.returncode == 0, res.stdout + res.stderr
    assert 'Done in' in res.stdout and '2 re-copied, 0 errored' in res.stdout
    assert fingerprint(copied.tgt_sql, 'child_health_monthly', PARENT_OWN) == \
        fingerprint(copied.src_sql, 'child_health_monthly')
    assert fingerprint(copied.tgt_sql, 'child_health_monthly', SLICE2) == fingerprint(copied.src_sql, CHILD2)
    assert fingerprint(copied.tgt_sql, 'child_health_monthly', SLICE1) == kids
    assert drift(copied, copied.manifest) == []
    assert ledger_rows(copied) == sorted(r[0] for r in MANIFEST_ROWS)


def test_failed_recopy_leaves_the_old_slice(copied):
    copied.src_sql("INSERT INTO \"%s\" (id, label, month) VALUES (-1, 'rejected', DATE '2020-02-01')" % CHILD2)
    copied.tgt_sql('ALTER TABLE child_health_monthly ADD CONSTRAINT no_negative CHECK (id >= 0) NOT VALID')
    old = fingerprint(copied.tgt_sql, 'child_health_monthly')
    old_ledger = copied.tgt_sql("SELECT copied_at FROM icds_citus_migration.copy_ledger "
                                "WHERE source_table = '%s'" % CHILD2)
    res = run_cli(['migrate', '--yes', '--recopy', CHILD2] + cli_conn_args(copied) + ['--', copied.manifest])
    assert res.returncode == 1, res.stdout + res.stderr
    assert 'ERROR %s -> child_health_monthly: target: new row for relation "child_health_monthly" ' \
        'violates check constraint "no_negative"' % CHILD2 in res.stdout
    assert fingerprint(copied.tgt_sql, 'child_health_monthly') == old  # nothing deleted
    assert copied.tgt_sql("SELECT copied_at FROM icds_citus_migration.copy_ledger "
                          "WHERE source_table = '%s'" % CHILD2) == old_ledger
    assert manifest_flags(copied.manifest)[CHILD2] == (1, None)
    with open(copied.manifest + '.errors.jsonl') as handle:
        entry = json.loads(handle.readlines()[-1])
    assert entry['source_table'] == CHILD2 and entry['sqlstate'] == '23514'


@pytest.mark.parametrize('args,needle', [
    (['--recopy', 'no_such'], "table 'no_such' is not in the manifest"),
    (['--recopy', 'agg_awc', '--table', 'agg_awc'], 'drop --table'),
    (['--recopy', 'agg_awc', '--parallel', '2'], '--recopy re-copies the named tables one at a time: drop --parallel'),
])
def test_recopy_refusals(copied, args, needle):
    res = run_cli(['migrate', '--yes'] + cli_conn_args(copied) + [copied.manifest] + args)
    assert res.returncode == 2 and needle in res.stderr, res.stderr


def test_recopy_of_a_table_not_migrated_yet(dbs, tmp_path):
    load_nasty(dbs, rows=5)
    manifest = make_old_manifest(str(tmp_path / 'm.db'), MANIFEST_ROWS)
    res = run_cli(['migrate', '--yes'] + cli_conn_args(dbs) + [manifest, '--recopy', 'agg_awc'])
    assert res.returncode == 2
    assert "table 'agg_awc' is not migrated yet" in res.stderr
    assert dbs.tgt_sql('SELECT count(*) FROM agg_awc').strip() == '0'


def test_recopy_through_the_module(copied):
    _write_after_the_copy(copied)
    dry = run_module('migrate_tables', copied.module_args(path=copied.manifest, recopy_drifted=True),
                     check=True)
    assert dry['changed'] is True and not dry.get('failed'), dry
    assert sorted(t['source_table'] for t in dry['tables'] if t['status'] == 'drifted') == sorted(
        [WEIRD, CHILD1, 'agg_awc_2020-02-01_1'])
    assert dry['repaired'] == 3 and dry['recopied'] == 0
    assert len(drift(copied, copied.manifest)) == 3
    res = run_module('migrate_tables', copied.module_args(path=copied.manifest, recopy=[CHILD1]))
    assert res['changed'] is True and res['recopied'] == res['copied'] == 1 and not res.get('failed'), res
    res = run_module('migrate_tables', copied.module_args(path=copied.manifest, recopy_drifted=True))
    assert res['changed'] is True and res['recopied'] + res['repaired'] == 2, res
    assert drift(copied, copied.manifest) == []
    again = run_module('migrate_tables', copied.module_args(path=copied.manifest, recopy_drifted=True))
    assert again['changed'] is False and (again['recopied'], again['repaired']) == (0, 0)
    assert {t['status'] for t in again['tables']} == {'equal'}


@pytest.mark.citus
def test_recopy_drifted_into_distributed_and_reference_tables(citus_dbs, tmp_path):
    """On Citus the slice of a distributed parent is deleted and re-copied across shards in
    one distributed transaction; a reference table is replaced on every node."""
    dbs = citus_dbs
    load_nasty(dbs, rows=60)
    dbs.tgt_sql("SELECT create_distributed_table('child_health_monthly', 'id')")
    dbs.tgt_sql("SELECT create_reference_table('%s')"
                % WEIRD.replace("'", "''").replace('"', '""').join('""'))
    dbs.manifest = make_old_manifest(str(tmp_path / 'm.db'), MANIFEST_ROWS)
    res = run_cli(['migrate', '--yes', '--parallel', '2'] + cli_conn_args(dbs) + [dbs.manifest])
    assert res.returncode == 0, res.stdout + res.stderr
    sibling = fingerprint(dbs.tgt_sql, 'child_health_monthly', SLICE2)
    _write_after_the_copy(dbs)
    assert drift(dbs, dbs.manifest) == sorted([WEIRD, CHILD1, 'agg_awc_2020-02-01_1'])
    res = run_cli(['migrate', '--yes', '--recopy-drifted', '--parallel', '2'] + cli_conn_args(dbs)
                  + [dbs.manifest])
    assert res.returncode == 0, res.stdout + res.stderr
    # the distributed and the reference table are re-copied whole, the local one repaired by rows
    assert '2 re-copied, 0 errored, 1 repaired' in res.stdout, res.stdout
    assert drift(dbs, dbs.manifest) == []
    assert fingerprint(dbs.tgt_sql, 'child_health_monthly', SLICE1) == fingerprint(dbs.src_sql, CHILD1)
    assert fingerprint(dbs.tgt_sql, 'child_health_monthly', SLICE2) == sibling
    assert fingerprint(dbs.tgt_sql, WEIRD) == fingerprint(dbs.src_sql, WEIRD)
    assert ledger_rows(dbs) == sorted(r[0] for r in MANIFEST_ROWS)
