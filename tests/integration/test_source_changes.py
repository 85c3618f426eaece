"""The catch-up's source scan (validate.changed_rows.source_changes) on a real server: per
bucket, the count and key hash sum of EVERY row; and exactly the rows changed since the copy
snapshot, with their key hash and row hash."""

import psycopg2
import pytest

from ansible_collections.icds.citus_migration.plugins.module_utils.validate.changed_rows import (
    source_changes, source_snapshot)
from ansible_collections.icds.citus_migration.plugins.module_utils.validate.segment_checksum import (
    Scope, Side)

FINE = 8


def _rows(cur, expr):
    cur.execute('SELECT a, b::text, %s FROM "ch-src"' % expr)
    return {(a, b): int(h) for a, b, h in cur.fetchall()}


@pytest.mark.parametrize('mode', ['text', 'record'])
def test_sums_cover_every_row_and_only_changed_rows_are_listed(dbs, mode):
    conn = psycopg2.connect(host='127.0.0.1', port=dbs.source.port, user='postgres', dbname=dbs.source_db)
    with conn.cursor() as cur:
        cur.execute('CREATE TABLE "ch-src" (a text, b int, v text, PRIMARY KEY (a, b))')
        cur.execute("INSERT INTO \"ch-src\" SELECT 'sup' || (i % 3), i, 'v' || i FROM generate_series(1, 300) i")
    conn.commit()
    since = source_snapshot(conn)[1]  # the next transaction id: every row above is older
    with conn.cursor() as cur:
        cur.execute("UPDATE \"ch-src\" SET v = 'changed' WHERE b IN (5, 50, 150)")
        cur.execute('DELETE FROM "ch-src" WHERE b IN (7, 70)')
        cur.execute("INSERT INTO \"ch-src\" VALUES ('new', 1, 'x'), ('sup1', 1000, 'y')")
    conn.commit()
    scope = Scope('ch-src', 'ch-src', 'table', False, None, ['a', 'b', 'v'], key='a', key_type='text',
                  key_columns=('a', 'b'), key_types=('text', 'integer'), hash_mode=mode, fine=FINE)
    got = source_changes(Side(conn, 'public', 'source'), scope, [], since)

    with conn.cursor() as cur:
        fn = 'hash_record_extended(ROW(%s), 0)' if mode == 'record' else 'hashtextextended(ROW(%s)::text, 0)'
        key_hash, row_hash = _rows(cur, fn % 'a, b'), _rows(cur, fn % 'a, b, v')
    expected = {}
    for key, kh in key_hash.items():
        n, total = expected.get(kh & (FINE - 1), (0, 0))
        expected[kh & (FINE - 1)] = (n + 1, total + kh)
    assert got.sums == expected
    changed = {('sup2', '5'), ('sup2', '50'), ('sup0', '150'), ('new', '1'), ('sup1', '1000')}
    assert set(got.rows) == changed
    for key in changed:
        assert got.rows[key] == (key_hash[key] & (FINE - 1), key_hash[key], row_hash[key])
    conn.close()
