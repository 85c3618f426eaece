"""Array values spliced into SQL as one literal come back from a real server as they went in."""

import psycopg2
import pytest

from ansible_collections.icds.citus_migration.plugins.module_utils.validate.sql_arrays import array_literal
from ansible_collections.icds.citus_migration.plugins.module_utils.validate.segment_checksum import (
    Scope, key_match)
from psycopg2 import sql

HOSTILE = ['', ' lead and trail ', 'a,b', '{x}', '"quoted"', 'back\\slash\\', "it's", 'NULL', 'null',
           'tab\there', 'new\nline', 'ünï ☃', '\\"', ')', 'x'] + [None]


def _connect(server, db):
    return psycopg2.connect(host='127.0.0.1', port=server.port, user='postgres', dbname=db)


def test_text_values_round_trip_in_order(dbs):
    conn = _connect(dbs.source, dbs.source_db)
    with conn.cursor() as cur:
        cur.execute(sql.SQL('SELECT v FROM unnest({}) WITH ORDINALITY AS t(v, n) ORDER BY n').format(
            array_literal(HOSTILE, 'text')))
        assert [r[0] for r in cur.fetchall()] == HOSTILE
    conn.close()


@pytest.mark.parametrize('typ, values', [
    ('int8', [-(1 << 63), 0, (1 << 63) - 1]),
    ('numeric', [10 ** 30, -5]),
    ('tid', ['(0,1)', '(12,7)']),
    ('date', ['2020-01-01', '1999-12-31']),
])
def test_typed_values_round_trip(dbs, typ, values):
    conn = _connect(dbs.source, dbs.source_db)
    with conn.cursor() as cur:
        cur.execute(sql.SQL('SELECT v::text FROM unnest({}) WITH ORDINALITY AS t(v, n) ORDER BY n').format(
            array_literal(values, typ)))
        assert [r[0] for r in cur.fetchall()] == [str(v) for v in values]
    conn.close()


def test_key_match_selects_exactly_the_keys_with_hostile_values(dbs):
    """A two-column key whose values need quoting: the rows of the wanted keys, no other."""
    conn = _connect(dbs.source, dbs.source_db)
    values = [v for v in HOSTILE if v is not None]
    with conn.cursor() as cur:
        cur.execute('CREATE TABLE "odd-keys" (a text, b int, PRIMARY KEY (a, b))')
        cur.executemany('INSERT INTO "odd-keys" VALUES (%s, %s)', [(v, n) for v in values for n in (1, 2)])
        wanted = [(v, '1') for v in values[::2]] + [(values[1], '2')]
        scope = Scope('odd-keys', 'odd-keys', 'table', False, None, ['a', 'b'], key='a', key_type='text',
                      key_columns=('a', 'b'), key_types=('text', 'integer'))
        cur.execute(sql.SQL('SELECT a, b::text FROM "odd-keys" WHERE {}').format(key_match(scope, wanted)))
        assert sorted(cur.fetchall()) == sorted(wanted)
    conn.close()
