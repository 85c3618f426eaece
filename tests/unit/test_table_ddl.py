"""Pure parts of the DDL extraction: index definition parsing, sequence restart, batching."""

import pytest

from ansible_collections.icds.citus_migration.plugins.module_utils.schema.child_tables import (
    ChildStep, _batches,
)
from ansible_collections.icds.citus_migration.plugins.module_utils.schema.citus_catalog import Placement
from ansible_collections.icds.citus_migration.plugins.module_utils.common.errors import MigrationError
from ansible_collections.icds.citus_migration.plugins.module_utils.schema.table_ddl import (
    SequenceDef, _index_tail, _restart_value,
)

UCR_Q = '"ucr_icds-cas_static-child_health_cases_a1b2c3d4"'


def test_index_tail_keeps_the_table_name_inside_the_predicate():
    definition = ('CREATE INDEX "ucr_icds-cas_lower_name" ON public.%s USING btree '
                  "(lower(name) DESC NULLS LAST) WHERE (name <> "
                  "'ucr_icds-cas_static-child_health_cases_a1b2c3d4'::text)" % UCR_Q)
    tail = _index_tail(definition, False, '"ucr_icds-cas_lower_name"', 'public', UCR_Q)
    assert tail == (" USING btree (lower(name) DESC NULLS LAST) WHERE (name <> "
                    "'ucr_icds-cas_static-child_health_cases_a1b2c3d4'::text)")


def test_index_tail_of_unique_and_partitioned_parent_indexes():
    assert _index_tail('CREATE UNIQUE INDEX i ON public.t USING btree (a, b)',
                       True, 'i', 'public', 't') == ' USING btree (a, b)'
    assert _index_tail('CREATE INDEX "a-b_idx" ON ONLY public."a-b" USING hash (m)',
                       False, '"a-b_idx"', 'public', '"a-b"') == ' USING hash (m)'


def test_index_tail_refuses_a_definition_it_cannot_parse():
    with pytest.raises(MigrationError, match='cannot parse the definition of index i'):
        _index_tail('CREATE INDEX i ON other.t USING btree (a)', False, 'i', 'public', 't')
    # a name that only starts like the table's is not taken for it
    with pytest.raises(MigrationError):
        _index_tail('CREATE INDEX i ON public.t2 USING btree (a)', False, 'i', 'public', 't')


def _seq(last, increment=1, minvalue=1, maxvalue=100):
    return SequenceDef(name='s', column='id', kind='serial', data_type='integer', start=1,
                       increment=increment, minvalue=minvalue, maxvalue=maxvalue, cache=1,
                       cycle=False, last_value=last)


def test_restart_value_continues_after_the_source_and_stays_in_range():
    assert _restart_value(_seq(None)) is None          # never used: keep START WITH
    assert _restart_value(_seq(41)) == 42
    assert _restart_value(_seq(41, increment=5)) == 46
    assert _restart_value(_seq(-10, increment=-1, minvalue=-100, maxvalue=-1)) == -11
    assert _restart_value(_seq(100)) is None            # exhausted: leave it alone


def test_batches_keep_a_childs_statements_together():
    steps = [ChildStep('c%d' % i, 'p', ['s'] * n) for i, n in enumerate([1, 3, 2, 1, 4])]
    batches = _batches(steps, 4)
    assert [[s.name for s in b] for b in batches] == [['c0', 'c1'], ['c2', 'c3'], ['c4']]
    assert _batches([], 500) == []
    # a child with more statements than the batch size gets a batch of its own
    assert [[s.name for s in b] for b in _batches(steps, 2)] == \
        [['c0'], ['c1'], ['c2'], ['c3'], ['c4']]


def test_placement_satisfies_plan_kinds():
    assert Placement('hash', 'supervisor_id').satisfies('hash', 'supervisor_id')
    assert not Placement('hash', 'location_id').satisfies('hash', 'supervisor_id')
    assert Placement('reference').satisfies('reference')
    assert not Placement('reference').satisfies('local')
    assert Placement('citus_local').satisfies('local')
    assert Placement('local').satisfies('local')
    assert not Placement('local').satisfies('hash', 'supervisor_id')
