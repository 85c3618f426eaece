"""plan_sequence_sync: which target sequences move, and never backwards."""

from ansible_collections.icds.citus_migration.plugins.module_utils.schema.sequences import (
    OwnedSequence, plan_sequence_sync,
)


def seq(table, last, increment=1, column='id', name=None, next_value=None):
    return {(table, column): OwnedSequence(table, column, name or '%s_%s_seq' % (table, column),
                                           increment, last, next_value)}


def merged(*parts):
    out = {}
    for part in parts:
        out.update(part)
    return out


def test_behind_unused_ahead_missing_and_never_used():
    source = merged(seq('behind', 50), seq('fresh', 7), seq('ahead', 10), seq('equal', 5),
                    seq('gone', 3), seq('idle', None))
    target = merged(seq('behind', 20), seq('fresh', None), seq('ahead', 100), seq('equal', 5),
                    seq('idle', None))
    plan = plan_sequence_sync(source, target)
    assert [(c.table, c.target_last_value, c.set_to) for c in plan.changes] == [
        ('behind', 20, 50), ('fresh', None, 7)]
    assert plan.in_step == ['ahead.id', 'equal.id']
    assert plan.missing_on_target == ['gone.id']
    assert plan.unused_on_source == ['idle.id']


def test_descending_sequences_move_down():
    source = merged(seq('down', -40, increment=-1), seq('past', -40, increment=-1))
    target = merged(seq('down', -10, increment=-1), seq('past', -90, increment=-1))
    plan = plan_sequence_sync(source, target)
    assert [(c.table, c.set_to, c.increment) for c in plan.changes] == [('down', -40, -1)]
    assert plan.in_step == ['past.id']


def test_target_sequence_name_is_the_targets_own():
    source = seq('t-1', 9, name='old_name_seq')
    target = seq('t-1', None, name='t-1_id_seq')
    (change,) = plan_sequence_sync(source, target).changes
    assert change.sequence == 't-1_id_seq'
    assert change.as_dict() == {'table': 't-1', 'column': 'id', 'sequence': 't-1_id_seq',
                                'source_last_value': 9, 'target_last_value': None, 'set_to': 9}


def test_restarted_but_never_called_target_is_in_step():
    """ALTER SEQUENCE ... RESTART WITH 51 (the bootstrap): pg_sequences shows no last value,
    but nextval() would return 51, past the source's 50."""
    source = merged(seq('restarted', 50), seq('short', 50))
    target = merged(seq('restarted', None, next_value=51), seq('short', None, next_value=40))
    plan = plan_sequence_sync(source, target)
    assert plan.in_step == ['restarted.id']
    assert [c.table for c in plan.changes] == ['short']


def test_tables_not_on_the_target_are_listed_apart():
    source = merged(seq('migrated', 5), seq('ignored', 9), seq('no-seq', 3))
    target = seq('migrated', 1)
    plan = plan_sequence_sync(source, target, target_tables={'migrated', 'no-seq'})
    assert [c.table for c in plan.changes] == ['migrated']
    assert plan.not_on_target == ['ignored.id']
    assert plan.missing_on_target == ['no-seq.id']
