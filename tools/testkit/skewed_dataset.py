"""A source whose data sits mostly in a few big tables, as ICDS's does: for the progress and
status tests and the ETA measurement (benchmarks/eta_accuracy.py).

``dbs`` is anything with ``src_sql(sql)`` and ``tgt_sql(sql)`` (tests' DbPair, the benchmark's pair).
"""

import sqlite3
from typing import List, Optional, Sequence, Tuple, Union

BIG_NAMES = ['child_health_monthly_2020-01-01', 'child_health_monthly_2020-02-01',
             'child_health_monthly_2020-03-01', 'child_health_monthly_2020-04-01']
BIG = BIG_NAMES[:2]  # the big tables when ``big_rows`` is one number
SMALL_PREFIX = 'agg_awc_'
# an errored table: its target column is too narrow for the source's rows (SQLSTATE 22001)
BROKEN = 'awc_location_broken'


def small_name(i: int) -> str:
    return '%s2020-%02d-01_%d' % (SMALL_PREFIX, i % 12 + 1, i)


def load_skewed(dbs, big_rows: Union[int, Sequence[int]], small_tables: int = 20,
                small_rows: Union[int, Sequence[int]] = 200,
                broken: bool = False, big_ms_per_10k_rows: int = 0, slow_all: bool = False
                ) -> List[Tuple[str, Optional[str], Optional[str]]]:
    """Create and fill the tables on the source (and empty ones on the target); the manifest
    rows (source table, date, target table) to copy them, the big tables among the small.

    ``big_ms_per_10k_rows``: a target trigger sleeps that long every 10,000 rows written to a
    big table: a slow target at a steady rate, so that a copy of a few hundred MB lasts long
    enough to be watched, as a terabyte does. ``small_rows``: rows of every small table, or a
    list cycled over them (small tables of several sizes, as ICDS's monthly tables are).
    ``slow_all``: the small tables are slowed the same way (a target slow for every table)."""
    sizes = [big_rows] * len(BIG) if isinstance(big_rows, int) else list(big_rows)
    bigs = list(zip(BIG_NAMES, sizes))
    rows = []
    smalls = []
    for i in range(small_tables):
        name = small_name(i)
        _table(dbs, name, small_rows if isinstance(small_rows, int) else small_rows[i % len(small_rows)])
        if slow_all and big_ms_per_10k_rows:
            _slow_target(dbs, name, big_ms_per_10k_rows)
        smalls.append((name, name[len(SMALL_PREFIX):len(SMALL_PREFIX) + 10], None))
    share = len(smalls) // (len(bigs) + 1)
    rows += smalls[:share]
    for k, (name, n) in enumerate(bigs):
        _table(dbs, name, n)
        if big_ms_per_10k_rows:
            _slow_target(dbs, name, big_ms_per_10k_rows)
        rows.append((name, name[-10:], None))
        rows += smalls[share * (k + 1):share * (k + 2)] if k + 1 < len(bigs) else smalls[share * (k + 1):]
    if broken:
        dbs.src_sql('CREATE TABLE "%s" (id int, payload text)' % BROKEN)
        dbs.tgt_sql('CREATE TABLE "%s" (id int, payload varchar(3))' % BROKEN)
        dbs.src_sql("INSERT INTO \"%s\" SELECT g, 'too long' FROM generate_series(1, 10) g" % BROKEN)
        rows.append((BROKEN, '2020-03-01', None))
    dbs.src_sql('ANALYZE')
    return rows


def _table(dbs, name: str, n: int) -> None:
    ddl = 'CREATE TABLE "%s" (id int, payload text)' % name
    dbs.src_sql(ddl)
    dbs.tgt_sql(ddl)
    dbs.src_sql('INSERT INTO "%s" SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, %d) g'
                % (name, n))


def _slow_target(dbs, name: str, ms_per_10k: int) -> None:
    func = 'slow_%s' % abs(hash(name))
    dbs.tgt_sql("CREATE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF NEW.id %% 1000 = 0 THEN PERFORM pg_sleep(%f); END IF; RETURN NEW; END $$"
                % (func, ms_per_10k / 10000.0))
    dbs.tgt_sql('CREATE TRIGGER slow BEFORE INSERT ON "%s" FOR EACH ROW EXECUTE FUNCTION %s()'
                % (name, func))


def gate_target(dbs, name: str, at_row: int, lock_key: int) -> None:
    """Writing row ``at_row`` of ``name`` on the target waits for advisory lock ``lock_key``:
    a test holding that lock keeps the copy in flight, with bytes already streamed."""
    func = 'gate_%s' % abs(hash(name))
    dbs.tgt_sql("CREATE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF NEW.id = %d THEN PERFORM pg_advisory_lock_shared(%d); "
                "PERFORM pg_advisory_unlock_shared(%d); END IF; RETURN NEW; END $$"
                % (func, at_row, lock_key, lock_key))
    dbs.tgt_sql('CREATE TRIGGER gate BEFORE INSERT ON "%s" FOR EACH ROW EXECUTE FUNCTION %s()'
                % (name, func))


def skewed_manifest(path: str, rows: Sequence[Tuple[str, Optional[str], Optional[str]]]) -> str:
    """A manifest with exactly the old tool's schema listing ``rows``."""
    conn = sqlite3.connect(path)
    conn.execute('CREATE TABLE tables (id integer primary key, source_table text not null, '
                 'date text, target_table text, migrated integer, errored integer)')
    conn.executemany('INSERT INTO tables (source_table, date, target_table) VALUES (?, ?, ?)', rows)
    conn.commit()
    conn.close()
    return path
