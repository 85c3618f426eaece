"""Keyed tables of every mapping kind, copied, then drifted on the source (catch-up tests)."""

import json
from typing import Dict, List, Tuple

from tests.integration.copy_helpers import cli_conn_args, fingerprint, make_old_manifest, run_cli

ROWS = 30000  # three planned segments of a same-name table
COLS = ("id bigint NOT NULL, label text, doc jsonb, tags text[], amount numeric(20,6), "
        "at timestamptz, raw bytea, month date")
SAME = 'cases-2020'          # same-name table, hyphenated, bigint key
TEXT_KEY = 'ucr-docs'        # same-name table, PRIMARY KEY (grp, id): a leading column of 3 values
KEYLESS = 'keyless_log'      # no usable key: compared and re-copied whole
KEEP = 'agg'                 # keep-child parent; children agg_2020-01-01 / agg_2020-02-01
DROP = 'chm'                 # drop-child parent; children chm_2020-01-01 / chm_2020-02-01
PART = 'daily'               # declaratively partitioned; partitions daily_m202001 / daily_m202002
MONTHS = ('2020-01-01', '2020-02-01')


def q(name: str) -> str:
    return '"%s"' % name.replace('"', '""')


def _fill(table: str, first: int, n: int, month: str, text_key: bool = False) -> str:
    key = "'doc-' || lpad(g::text, 8, '0')" if text_key else 'g'
    if text_key:
        key = "'grp-' || (g % 3), " + key
    return ("INSERT INTO {t} SELECT {key}, 'row ' || g || E'\\ttab\\nline', "
            "jsonb_build_object('g', g, 'q', E'\"x\"'), ARRAY['a', NULL, g::text], "
            "(g * 1.5)::numeric(20,6), timestamptz '2020-01-01 00:00+05:30' + g * interval '1 min', "
            "decode(md5(g::text), 'hex'), DATE '{m}' FROM generate_series({a}, {b}) g"
            ).format(t=q(table), key=key, m=month, a=first, b=first + n - 1)


def schema(target: bool) -> List[str]:
    text_cols = 'grp text NOT NULL, ' + COLS.replace('id bigint', 'id text')
    out = [
        'CREATE TABLE %s (%s, PRIMARY KEY (id))' % (q(SAME), COLS),
        'CREATE TABLE %s (%s, PRIMARY KEY (grp, id))' % (q(TEXT_KEY), text_cols),
        'CREATE TABLE %s (%s)' % (q(KEYLESS), COLS),
        'CREATE TABLE %s (%s, PRIMARY KEY (id))' % (q(KEEP), COLS),
        'CREATE TABLE %s (%s, PRIMARY KEY (id))' % (q(DROP), COLS),
        'CREATE TABLE %s (%s, PRIMARY KEY (id, month)) PARTITION BY RANGE (month)' % (q(PART), COLS),
    ]
    for i, m in enumerate(MONTHS):
        nxt = MONTHS[i + 1] if i + 1 < len(MONTHS) else '2020-03-01'
        out.append("CREATE TABLE %s (CHECK (month = DATE '%s'), PRIMARY KEY (id)) INHERITS (%s)"
                   % (q('%s_%s' % (KEEP, m)), m, q(KEEP)))
        if not target:
            out.append("CREATE TABLE %s (CHECK (month = DATE '%s'), PRIMARY KEY (id)) INHERITS (%s)"
                       % (q('%s_%s' % (DROP, m)), m, q(DROP)))
        out.append("CREATE TABLE %s PARTITION OF %s FOR VALUES FROM ('%s') TO ('%s')"
                   % (q('%s_m%s' % (PART, m[:7].replace('-', ''))), q(PART), m, nxt))
    return out


def manifest_rows() -> List[Tuple[str, str, str]]:
    rows = [(SAME, None, None), (TEXT_KEY, None, None), (KEYLESS, None, None), (KEEP, None, None),
            (DROP, None, None), (PART, None, None)]
    for m in MONTHS:
        rows.append(('%s_%s' % (KEEP, m), m, '%s_%s' % (KEEP, m)))
        rows.append(('%s_%s' % (DROP, m), m, DROP))
        part = '%s_m%s' % (PART, m[:7].replace('-', ''))
        rows.append((part, m, part))
    return rows


# (source table, rows it holds on the source, key column type) of every table holding rows
def leaf_tables() -> List[str]:
    out = [SAME, TEXT_KEY, KEYLESS, KEEP, DROP]
    for m in MONTHS:
        out += ['%s_%s' % (KEEP, m), '%s_%s' % (DROP, m), '%s_m%s' % (PART, m[:7].replace('-', ''))]
    return out


def load(dbs, manifest_path: str, citus: bool = False) -> str:
    for ddl in schema(False):
        dbs.src_sql(ddl)
    for ddl in schema(True):
        dbs.tgt_sql(ddl)
    if citus:
        for table, column in ((SAME, 'id'), (DROP, 'id'), (TEXT_KEY, 'grp')):
            dbs.tgt_sql("SELECT create_distributed_table('%s', '%s')" % (q(table), column))
        dbs.tgt_sql("SELECT create_reference_table('%s')" % q(KEYLESS))
    dbs.src_sql(_fill(SAME, 1, ROWS, '2020-01-01'))
    dbs.src_sql(_fill(TEXT_KEY, 1, 12000, '2020-01-01', text_key=True))
    dbs.src_sql(_fill(KEYLESS, 1, 3000, '2020-01-01'))
    dbs.src_sql(_fill(KEEP, 1, 50, '2020-01-01').replace("DATE '2020-01-01'", 'NULL'))
    dbs.src_sql(_fill(DROP, 1, 40, '2020-01-01').replace("DATE '2020-01-01'", 'NULL'))
    for i, m in enumerate(MONTHS):
        base = 100000 * (i + 1)
        dbs.src_sql(_fill('%s_%s' % (KEEP, m), base, 8000, m))
        dbs.src_sql(_fill('%s_%s' % (DROP, m), base, 9000 + 500 * i, m))
        dbs.src_sql(_fill(PART, base, 7000, m))
    dbs.src_sql('ANALYZE')
    path = make_old_manifest(manifest_path, manifest_rows())
    res = run_cli(['migrate', '--yes', '--parallel', '2'] + cli_conn_args(dbs) + [path])
    assert res.returncode == 0, res.stdout + res.stderr
    return path


def drift_source(dbs) -> Dict[str, int]:
    """Change 0.1%, delete 0.05% of every table's rows and insert a few; rows touched per table."""
    touched = {}
    for i, table in enumerate(leaf_tables()):
        t = q(table)
        n = int(dbs.src_sql('SELECT count(*) FROM ONLY %s' % t).strip())
        changed = max(1, n // 1000)
        deleted = max(1, n // 2000)
        dbs.src_sql("UPDATE ONLY %s SET label = label || ' changed' WHERE ctid IN "
                    "(SELECT ctid FROM ONLY %s ORDER BY md5(id::text) LIMIT %d)" % (t, t, changed))
        dbs.src_sql("DELETE FROM ONLY %s WHERE ctid IN (SELECT ctid FROM ONLY %s WHERE label "
                    "NOT LIKE '%%%% changed' ORDER BY md5(id::text || 'x') LIMIT %d)" % (t, t, deleted))
        month = "month" if table not in (KEEP, DROP) else 'NULL'
        key = "'doc-new-' || id" if table == TEXT_KEY else 'id + 5000000'
        grp = ('grp, ', 'grp, ') if table == TEXT_KEY else ('', '')
        dbs.src_sql("INSERT INTO %s (%sid, label, doc, tags, amount, at, raw, month) SELECT %s%s, "
                    "'inserted later', doc, tags, amount, at, raw, %s FROM ONLY %s ORDER BY id LIMIT 3"
                    % (t, grp[0], grp[1], key, month, t))
        touched[table] = changed + deleted + 3
    return touched


def target_rows_of(table: str) -> Tuple[str, str]:
    """(target table, WHERE) holding a source table's rows on the target."""
    if table.startswith(DROP + '_'):
        return DROP, "WHERE month = DATE '%s'" % table[len(DROP) + 1:]
    if table == DROP:
        return DROP, 'WHERE month IS NULL'
    return table, ''


def assert_target_equals_source(dbs) -> None:
    for table in leaf_tables():
        target, where = target_rows_of(table)
        got = fingerprint(dbs.tgt_sql, target, where)
        assert got == fingerprint(dbs.src_sql, table), table


def row_versions(dbs, table: str) -> Dict[str, str]:
    """key -> xmin of the target rows holding a source table's rows (a rewrite changes it)."""
    target, where = target_rows_of(table)
    only = '' if table == PART else 'ONLY '
    text = dbs.tgt_sql("SELECT id::text || '=' || xmin::text FROM %s%s %s" % (only, q(target), where))
    return dict(line.split('=') for line in text.split())


def rewritten(before: Dict[str, str], after: Dict[str, str]) -> int:
    """Rows written, replaced or deleted between two row_versions snapshots."""
    return sum(1 for k, v in after.items() if before.get(k) != v) + sum(1 for k in before if k not in after)


def json_of(stdout: str) -> dict:
    return json.loads(stdout[stdout.index('{'):stdout.rindex('}') + 1])


def catch_up(dbs, manifest: str, *extra: str, env=None, background: bool = False):
    args = ['migrate', '--yes', '--recopy-drifted', '--json'] + list(extra) + cli_conn_args(dbs) + [manifest]
    return run_cli(args, env=env, background=background)
