"""citus_bootstrap reports every change it makes to a table's definition (result, check mode,
--diff) and refuses a plan key that would lose the source key's uniqueness."""


from ansible_collections.icds.citus_migration.plugins.module_utils.schema.table_plan import load_plan
from tests.fixtures import icds_real
from tests.fixtures.postgres import query
from tests.module_runner import run_module

GM = 'icds_dashboard_growth_monitoring_forms'


_KEY = """
SELECT ARRAY(SELECT a.attname FROM unnest(k.conkey) WITH ORDINALITY u(n, o)
               JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.n ORDER BY u.o)
  FROM pg_constraint k WHERE k.conrelid = %s::regclass AND k.contype = 'p'"""

_NULLABLE = """
SELECT attname FROM pg_attribute
 WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped AND NOT attnotnull"""


def _key(server, db, table):
    rows = query(server, db, _KEY, ('"%s"' % table,))
    return rows[0][0] if rows else None


def _target_tables(pair):
    return query(pair.target_server, pair.target_db,
                  "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace "
                  "AND relkind IN ('r', 'p')")


def _expected_changes(pair, plan):
    """What the plan changes, read from the source catalog: per table with a plan key that
    differs from its source key, the key change and the key columns that are nullable."""
    expected = {}
    tops = query(pair.source_server, pair.source_db,
                  "SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace "
                  "AND c.relkind = 'r' AND NOT EXISTS "
                  "(SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid)")
    for (table,) in tops:
        rule = plan.classify(table)
        if rule is None or rule.kind == 'ignore' or not rule.primary_key:
            continue
        before = _key(pair.source_server, pair.source_db, table)
        if before == list(rule.primary_key):
            continue
        nullable = {r[0] for r in query(pair.source_server, pair.source_db, _NULLABLE,
                                         ('"%s"' % table,))}
        expected[table] = (before, list(rule.primary_key),
                           sorted(c for c in rule.primary_key if c in nullable))
    return expected


def _by_table(changes):
    got = {}
    for change in changes:
        entry = got.setdefault(change['table'], [None, None, []])
        if change['change'] == 'primary_key':
            entry[0], entry[1] = change['before'], change['after']
            assert change['action'] == ('added' if change['before'] is None else 'extended')
        elif change['change'] == 'not_null':
            entry[2].append(change['column'])
    return {t: (b, a, sorted(n)) for t, (b, a, n) in got.items()}


def test_changes_reported_in_check_mode_diff_and_result_on_the_real_schema(dbs):
    icds_real.load_source(dbs)
    folder = icds_real.DATA_SOURCES
    expected = _expected_changes(dbs, load_plan(ucr_folder=folder))
    # the forms tables' key is extended and supervisor_id made NOT NULL
    assert expected[GM] == (['case_id'], ['supervisor_id', 'case_id', 'month'],
                            ['supervisor_id'])
    assert expected['child_health_monthly'][0] is None

    dry = run_module('citus_bootstrap', dbs.module_args(ucr_folder=folder), check=True, diff=True)
    assert not dry.get('failed'), dry.get('msg')
    assert _by_table(dry['changes']) == expected
    assert _target_tables(dbs) == []
    diff = {d['after_header']: d for d in dry['diff']}
    assert sorted(diff) == sorted('target: %s' % t for t in expected)
    gm = diff['target: ' + GM]
    assert gm['before'] == 'PRIMARY KEY (case_id)\nsupervisor_id NULL\n'
    assert gm['after'] == 'PRIMARY KEY (supervisor_id, case_id, month)\nsupervisor_id NOT NULL\n'
    warned = ' '.join(w['event']['msg'] if isinstance(w, dict) else w
                      for w in dry.get('warnings', []))
    assert "table '%s': primary key extended: (case_id) -> (supervisor_id, case_id, month)" \
        % GM in warned

    real = run_module('citus_bootstrap', dbs.module_args(ucr_folder=folder), diff=True)
    assert not real.get('failed'), real.get('msg')
    assert real['changes'] == dry['changes'] and real['diff'] == dry['diff']
    for table, (dummy, after, made_not_null) in expected.items():
        assert _key(dbs.target_server, dbs.target_db, table) == after, table
        nullable = {r[0] for r in query(dbs.target_server, dbs.target_db, _NULLABLE,
                                         ('"%s"' % table,))}
        assert not nullable & set(made_not_null), table
    again = run_module('citus_bootstrap', dbs.module_args(ucr_folder=folder), diff=True)
    assert again['changed'] is False and again['changes'] == [] and 'diff' not in again


def test_plan_key_dropping_a_source_key_column_is_refused(dbs, tmp_path):
    # a source that does have a doc_id, keyed like commcare-hq's model
    dbs.src_sql('CREATE TABLE %s (supervisor_id text NOT NULL, case_id text NOT NULL, '
                'month date NOT NULL, doc_id text, '
                'CONSTRAINT gm_pkey PRIMARY KEY (supervisor_id, case_id, month))' % GM)
    plan = tmp_path / 'plan.yml'
    plan.write_text('version: 1\nfamilies:\n  - name: %s\n    kind: drop_child\n'
                    '    distribution: {hash: supervisor_id}\n'
                    '    primary_key: [supervisor_id, doc_id]\n' % GM)
    for check in (True, False):
        result = run_module('citus_bootstrap', dbs.module_args(plan=str(plan)), check=check)
        assert result['failed'] is True
        msg = result['msg']
        assert "'%s'" % GM in msg
        assert '(supervisor_id, doc_id)' in msg and '(supervisor_id, case_id, month)' in msg
        assert "'case_id', 'month'" in msg
        assert _target_tables(dbs) == []
    # the same plan with the source key's columns in the key is accepted, and says so
    plan.write_text(plan.read_text().replace('[supervisor_id, doc_id]',
                                             '[supervisor_id, case_id, month, doc_id]'))
    result = run_module('citus_bootstrap', dbs.module_args(plan=str(plan)))
    assert not result.get('failed'), result.get('msg')
    assert [(c['change'], c.get('action'), c.get('column')) for c in result['changes']] == \
        [('primary_key', 'extended', None), ('not_null', None, 'doc_id')]
    assert _key(dbs.target_server, dbs.target_db, GM) == \
        ['supervisor_id', 'case_id', 'month', 'doc_id']
