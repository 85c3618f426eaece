"""The copy run's manifest writer: updates land in order, many per commit, failures surface."""

import sqlite3
import threading

import pytest

from ansible_collections.icds.citus_migration.plugins.module_utils.common.errors import ManifestError
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.store import Manifest
from ansible_collections.icds.citus_migration.plugins.module_utils.manifest.writer import (
    ManifestWriter,
)


def _manifest(tmp_path, n):
    path = str(tmp_path / 'manifest.db')
    with Manifest.create(path) as manifest:
        manifest.add_rows(('t_%03d' % i, '2020-01-01', None) for i in range(n))
        ids = [r.id for r in manifest.rows()]
    return path, ids


def test_updates_are_committed_in_order_and_batched(tmp_path):
    path, ids = _manifest(tmp_path, 100)
    writer = ManifestWriter(path)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute('BEGIN IMMEDIATE')  # the writer's first commit waits for this
    try:
        for table_id in ids:
            writer.mark_running(table_id, 'runner-a')
        for table_id in ids[:60]:
            writer.mark_migrated(table_id, 10, 100, '2026-01-01T00:00:00Z',
                                 '2026-01-01T00:00:01Z', 1.0, 'runner-a')
        writer.mark_errored(ids[60], 'target: duplicate key', '23505')
        writer.mark_pending(ids[61])
        # nothing can be committed while the file is locked
        assert writer.commits == 0
        blocker.execute('ROLLBACK')
        writer.flush()
        # the first batch may have been taken before the rest was queued; never one per update
        assert 1 <= writer.commits <= 2
    finally:
        blocker.close()
        writer.close()
    with Manifest.open(path, readonly=True) as manifest:
        rows = {r.id: r for r in manifest.rows()}
    assert [rows[i].migrated for i in ids[:60]] == [True] * 60
    assert rows[ids[60]].errored and rows[ids[60]].last_sqlstate == '23505'
    assert rows[ids[61]].state is None and rows[ids[61]].runner is None
    assert {rows[i].state for i in ids[62:]} == {'running'}
    assert {rows[i].attempts for i in ids} == {1}


def test_a_failed_write_is_raised_to_the_caller(tmp_path):
    path, ids = _manifest(tmp_path, 3)
    writer = ManifestWriter(path)
    writer.mark_running(ids[0], 'runner-a')
    writer.flush()
    other = sqlite3.connect(path)
    other.execute('DROP TABLE table_facts')
    other.commit()
    other.close()
    writer.mark_running(ids[1], 'runner-a')
    with pytest.raises(ManifestError) as failure:
        writer.flush()
    assert 'manifest %s' % path in str(failure.value)
    assert 'table_facts' in str(failure.value)
    with pytest.raises(ManifestError):
        writer.mark_running(ids[2], 'runner-a')
    with pytest.raises(ManifestError):
        writer.close()


def test_a_missing_manifest_fails_at_once(tmp_path):
    with pytest.raises(ManifestError, match='manifest not found'):
        ManifestWriter(str(tmp_path / 'absent.db'))


def test_close_waits_for_every_update(tmp_path):
    path, ids = _manifest(tmp_path, 50)
    writer = ManifestWriter(path)
    threads = [threading.Thread(target=writer.mark_running, args=(i, 'r')) for i in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.close()
    with Manifest.open(path, readonly=True) as manifest:
        assert {r.state for r in manifest.rows()} == {'running'}
