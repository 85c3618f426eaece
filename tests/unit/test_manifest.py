"""The manifest store reads the old tool's files unchanged and upgrades them in place."""

import os
import sqlite3
import stat

import pytest

from ansible_collections.icds.citus_migration.plugins.module_utils.common.errors import ManifestError
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.store import Manifest

OLD_TOOL_SCHEMA = ('CREATE TABLE tables (id integer primary key, source_table text not null, '
                   'date text, target_table text, migrated integer, errored integer)')


def make_old_manifest(path, rows):
    conn = sqlite3.connect(path)
    conn.execute(OLD_TOOL_SCHEMA)
    conn.executemany('INSERT INTO tables (source_table, date, target_table, migrated, errored) '
                     'VALUES (?, ?, ?, ?, ?)', rows)
    conn.commit()
    conn.close()


OLD_ROWS = [
    ('agg_awc', None, None, None, None),
    ('agg_awc_2020-01-01_1', '2020-01-01', 'agg_awc_2020-01-01_1', 1, None),
    ('child_health_monthly_2020-01-01', '2020-01-01', 'child_health_monthly', None, 1),
]


def test_old_manifest_opens_and_keeps_every_row(tmp_path):
    path = str(tmp_path / 'old.db')
    make_old_manifest(path, OLD_ROWS)
    with Manifest.open(path) as manifest:
        rows = manifest.rows()
    assert [(r.source_table, r.date, r.target_table, r.migrated, r.errored) for r in rows] == [
        ('agg_awc', None, None, False, False),
        ('agg_awc_2020-01-01_1', '2020-01-01', 'agg_awc_2020-01-01_1', True, False),
        ('child_health_monthly_2020-01-01', '2020-01-01', 'child_health_monthly', False, True),
    ]
    assert rows[0].target == 'agg_awc'
    # the old table is untouched: the old tool can still read it as before
    conn = sqlite3.connect(path)
    assert conn.execute('SELECT source_table, date, target_table, migrated, errored '
                        'FROM tables ORDER BY id').fetchall() == OLD_ROWS
    assert [c[1] for c in conn.execute('PRAGMA table_info(tables)')] == [
        'id', 'source_table', 'date', 'target_table', 'migrated', 'errored']


def test_facts_survive_reopen_and_old_columns_stay_compatible(tmp_path):
    path = str(tmp_path / 'old.db')
    make_old_manifest(path, OLD_ROWS)
    with Manifest.open(path) as manifest:
        manifest.mark_running(1, 'host:1')
        manifest.mark_migrated(1, 42, 1000, '2020-01-01T00:00:00Z', '2020-01-01T00:00:01Z', 1.0,
                               'runner-a')
        manifest.mark_running(3, 'host:1')
        manifest.mark_errored(3, 'boom', '23505')
    with Manifest.open(path) as manifest:
        first, _, third = manifest.rows()
    assert (first.migrated, first.rows_copied, first.bytes_copied, first.attempts) == (True, 42, 1000, 1)
    assert (third.errored, third.last_error, third.last_sqlstate) == (True, 'boom', '23505')
    conn = sqlite3.connect(path)
    assert conn.execute('SELECT migrated, errored FROM tables WHERE id = 1').fetchone() == (1, None)


def test_create_is_private(tmp_path):
    path = str(tmp_path / 'new.db')
    with Manifest.create(path) as manifest:
        assert manifest.add_rows([('a', None, None), ('b_2020-01-01', '2020-01-01', 'b')]) == 2
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with Manifest.open(path) as manifest:
        assert [r.target for r in manifest.rows()] == ['a', 'b']


def test_missing_file(tmp_path):
    with pytest.raises(ManifestError, match='manifest not found: .*nope.db'):
        Manifest.open(str(tmp_path / 'nope.db'))


def test_not_sqlite(tmp_path):
    path = tmp_path / 'notes.txt'
    path.write_text('hello, this is not a database\n' * 100)
    with pytest.raises(ManifestError, match='is not a migration manifest'):
        Manifest.open(str(path))
    assert path.read_text().startswith('hello')


def test_sqlite_without_tables_table(tmp_path):
    path = str(tmp_path / 'other.db')
    conn = sqlite3.connect(path)
    conn.execute('CREATE TABLE something (x int)')
    conn.commit()
    conn.close()
    with pytest.raises(ManifestError, match="has no 'tables' table"):
        Manifest.open(path)


def test_locked_manifest_is_a_clear_error(tmp_path, monkeypatch):
    from ansible_collections.icds.citus_migration.plugins.module_utils.manifest import store as mod
    path = str(tmp_path / 'm.db')
    Manifest.create(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute('BEGIN EXCLUSIVE')
    monkeypatch.setattr(mod, 'BUSY_TIMEOUT_S', 0.2)
    try:
        with pytest.raises(ManifestError, match='is locked by another process'):
            with Manifest.open(path) as manifest:
                manifest.mark_errored(1, 'x', None)
    finally:
        holder.execute('ROLLBACK')
        holder.close()
