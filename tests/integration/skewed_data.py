"""A source whose data sits mostly in a few big tables, as ICDS's does, for progress tests."""

from typing import List, Optional, Sequence, Tuple

from tests.integration.copy_helpers import make_old_manifest

BIG = ['child_health_monthly_2020-01-01', 'child_health_monthly_2020-02-01']
SMALL_PREFIX = 'agg_awc_'
# an errored table: its target column is too narrow for the source's rows (SQLSTATE 22001)
BROKEN = 'awc_location_broken'


def small_name(i: int) -> str:
    return '%s2020-%02d-01_%d' % (SMALL_PREFIX, i % 12 + 1, i)


def load_skewed(dbs, big_rows: int, small_tables: int = 20, small_rows: int = 200,
                broken: bool = False, big_ms_per_10k_rows: int = 0
                ) -> List[Tuple[str, Optional[str], Optional[str]]]:
    """Create and fill the tables on the source (and empty ones on the target); the manifest
    rows (source table, date, target table) to copy them, the big tables among the small.

    ``big_ms_per_10k_rows``: a target trigger sleeps that long every 10,000 rows written to a
    big table: a slow target at a steady rate, so that a copy of a few hundred MB lasts long
    enough to be watched, as a terabyte does."""
    rows = []
    smalls = []
    for i in range(small_tables):
        name = small_name(i)
        _table(dbs, name, small_rows)
        smalls.append((name, name[len(SMALL_PREFIX):len(SMALL_PREFIX) + 10], None))
    third = len(smalls) // 3
    rows += smalls[:third]
    for k, name in enumerate(BIG):
        _table(dbs, name, big_rows)
        if big_ms_per_10k_rows:
            _slow_target(dbs, name, big_ms_per_10k_rows)
        rows.append((name, name[-10:], None))
        rows += smalls[third * (k + 1):third * (k + 2)] if k + 1 < len(BIG) else smalls[third * (k + 1):]
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
                "IF NEW.id %% 10000 = 0 THEN PERFORM pg_sleep(%f); END IF; RETURN NEW; END $$"
                % (func, ms_per_10k / 1000.0))
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
    return make_old_manifest(path, rows)
