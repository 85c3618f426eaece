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
    got = source_changes(Side(conn, 'public', 'source'), scope, since)

    with conn.cursor() as cur:
        fn = 'hash_record_extended(ROW(%s), 0)' if mode == 'record' else 'hashtextextended(ROW(%s)::text, 0)'
        # the key hash in 'record' mode: each key column's own hash function seeded with the
        # hash of the columns before it
        kfn = 'hashint4extended(b, hashtextextended(a, 0))' if mode == 'record' else fn % 'a, b'
        key_hash, row_hash = _rows(cur, kfn), _rows(cur, fn % 'a, b, v')
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


KEY_TYPES = [('t', 'text'), ('v', 'character varying(12)'), ('c', 'character(3)'), ('s', 'smallint'),
             ('i', 'integer'), ('b', 'bigint'), ('u', 'uuid'), ('n', 'numeric(10,2)'), ('d', 'date'),
             ('ts', 'timestamp without time zone'), ('tz', 'timestamp with time zone'), ('dm', 'icds_code')]


def test_the_key_hash_of_every_key_type(dbs):
    """A key of every column type a key can have (and a domain): the hash runs on each, gives
    every key its own value, and the same value for the same key in another database."""
    from ansible_collections.icds.citus_migration.plugins.module_utils.validate.segment_checksum import key_hash
    from psycopg2 import sql as _sql
    scope = Scope('all-keys', 'all-keys', 'table', False, None, [c for c, _t in KEY_TYPES], key='t', key_type='text',
                  key_columns=tuple(c for c, _t in KEY_TYPES), key_types=tuple(t for _c, t in KEY_TYPES),
                  hash_mode='record')
    hashes = []
    for server, db in ((dbs.source, dbs.source_db), (dbs.target, dbs.target_db)):
        conn = psycopg2.connect(host='127.0.0.1', port=server.port, user='postgres', dbname=db)
        with conn.cursor() as cur:
            cur.execute('CREATE DOMAIN icds_code AS text CHECK (VALUE <> \'\')')
            cur.execute('CREATE TABLE "all-keys" (%s, PRIMARY KEY (%s))' % (
                ', '.join('%s %s NOT NULL' % (c, t) for c, t in KEY_TYPES), ', '.join(c for c, _t in KEY_TYPES)))
            # 512 keys, each differing from another in one column only
            cur.execute("""INSERT INTO "all-keys" SELECT 'k' || (g & 1), 'v' || (g >> 1 & 1), 'c' || (g >> 2 & 1),
                (g >> 3 & 1)::smallint, g >> 4 & 1, (g >> 5 & 1)::bigint << 40,
                ('00000000-0000-0000-0000-00000000000' || (g >> 6 & 1))::uuid, (g >> 7 & 1) + 0.25,
                CASE WHEN g >> 8 & 1 = 1 THEN 'infinity'::date ELSE DATE '2020-01-01' END,
                TIMESTAMP '2020-01-01 10:00' + (g & 3) * interval '1 second', TIMESTAMPTZ '2020-01-01 10:00+00',
                'd' FROM generate_series(0, 511) g""")
            cur.execute(_sql.SQL('SELECT {} FROM "all-keys" ORDER BY {}').format(
                key_hash(scope), _sql.SQL(', ').join(_sql.Identifier(c) for c, _t in KEY_TYPES)))
            hashes.append([r[0] for r in cur.fetchall()])
        conn.commit()
        conn.close()
    assert None not in hashes[0]
    assert len(set(hashes[0])) == 512
    assert hashes[0] == hashes[1]


def test_hunted_rows_reads_every_row_when_too_many_buckets_are_wanted_whole(dbs, monkeypatch):
    """More whole buckets than MAX_HUNTED: the scan reads every row of the table instead of
    naming the buckets (a bounded query); fewer: the rows of those buckets only."""
    from ansible_collections.icds.citus_migration.plugins.module_utils.validate import changed_rows
    conn = psycopg2.connect(host='127.0.0.1', port=dbs.source.port, user='postgres', dbname=dbs.source_db)
    with conn.cursor() as cur:
        cur.execute('CREATE TABLE "ch-src" (a text, b int, v text, PRIMARY KEY (a, b))')
        cur.execute("INSERT INTO \"ch-src\" SELECT 'sup' || (i % 3), i, 'v' || i FROM generate_series(1, 300) i")
    conn.commit()
    scope = Scope('ch-src', 'ch-src', 'table', False, None, ['a', 'b', 'v'], key='a', key_type='text',
                  key_columns=('a', 'b'), key_types=('text', 'integer'), hash_mode='record', fine=FINE)
    side = Side(conn, 'public', 'target')
    few = changed_rows.hunted_rows(side, [scope], [(set(), {1, 2})])[0]
    assert set(few) == {1, 2} and 0 < sum(len(rows) for rows in few.values()) < 300
    monkeypatch.setattr(changed_rows, 'MAX_HUNTED', 1)
    every = changed_rows.hunted_rows(side, [scope], [(set(), {1, 2})])[0]
    assert sum(len(rows) for rows in every.values()) == 300 and len(every) == FINE
    conn.close()
