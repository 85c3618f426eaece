"""Textual mirror edits of UCR data source JSON: only added lines, layout kept, exact JSON."""

import json
import os

import pytest

from ansible_collections.icds.citus_migration.plugins.module_utils.commcare.ucr_datasource import (
    DataSourceError,
    MirrorSpec,
    add_mirror,
    backup_name,
    detect_compact,
    detect_indent,
    parse_spans,
    plan_file,
    remove_mirror,
    skip_reason,
)

SAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       'fixtures', 'ucr_data_sources')
ENV, ENGINE = 'icds', 'icds-ucr-citus'
ENTRY = {'server_environment': ENV, 'engine_ids': [ENGINE]}
SPEC = MirrorSpec(server_environment=ENV, mirror_engine_id=ENGINE, domains=('icds-cas',))


def sample(name: str) -> str:
    with open(os.path.join(SAMPLES, name), encoding='utf-8', newline='') as fh:
        return fh.read()


def added_lines(before: str, after: str, block):
    """True when ``after`` is ``before`` with the lines ``block`` inserted at one place."""
    old, new = before.splitlines(True), after.splitlines(True)
    return any(old[:k] + list(block) + old[k:] == new for k in range(len(old) + 1))


def test_spans_cover_exactly_each_value():
    for name in sorted(os.listdir(SAMPLES)):
        text = sample(name)
        root = parse_spans(text)
        assert json.loads(text[root.start:root.end]) == json.loads(text)
        for member in root.members:
            assert json.loads(text[member.value.start:member.value.end]) == json.loads(text)[member.key]
            assert json.loads(text[member.key_start:member.key_end]) == member.key


def test_indent_and_layout_detection():
    assert detect_indent(sample('cbe_form.json')) == '    '
    assert detect_indent(sample('ls_vhnd_form.json')) == '  '
    assert detect_compact(sample('cbe_form.json'), parse_spans(sample('cbe_form.json')))
    text = sample('child_health_cases.json')
    assert not detect_compact(text, parse_spans(text))


def test_new_key_in_a_compact_four_space_file():
    before = sample('cbe_form.json')
    after = add_mirror(before, ENV, ENGINE)
    assert added_lines(before, after, [
        '    "mirrored_engine_ids": [\n',
        '        {"server_environment": "icds", "engine_ids": ["icds-ucr-citus"]}\n',
        '    ],\n',
    ])
    # right after server_environment, before config
    assert after.index('"mirrored_engine_ids"') < after.index('"config"')
    assert after.index('"server_environment": ["india"') < after.index('"mirrored_engine_ids"')
    assert json.loads(after) == dict(json.loads(before), mirrored_engine_ids=[ENTRY])


def test_new_key_in_a_two_space_file():
    before = sample('ls_vhnd_form.json')
    after = add_mirror(before, ENV, ENGINE)
    assert added_lines(before, after, [
        '  "mirrored_engine_ids": [\n',
        '    {"server_environment": "icds", "engine_ids": ["icds-ucr-citus"]}\n',
        '  ],\n',
    ])
    assert after.endswith('}\n')


def test_new_entry_beside_an_existing_mirror_in_an_expanded_file():
    before = sample('child_health_cases.json')
    after = add_mirror(before, ENV, ENGINE)
    assert added_lines(before, after, [
        '        {\n',
        '            "server_environment": "icds",\n',
        '            "engine_ids": [\n',
        '                "icds-ucr-citus"\n',
        '            ]\n',
        '        },\n',
    ])
    mirrors = json.loads(after)['mirrored_engine_ids']
    assert mirrors == [ENTRY, {'server_environment': 'india', 'engine_ids': ['icds-test-ucr']}]


def test_already_present_is_no_change():
    once = add_mirror(sample('child_health_cases.json'), ENV, ENGINE)
    assert add_mirror(once, ENV, ENGINE) is None
    text = '{"domains": ["icds-cas"], "mirrored_engine_ids": [{"server_environment": "icds", ' \
           '"engine_ids": ["other", "icds-ucr-citus"]}], "config": {"engine_id": "icds-ucr"}}\n'
    assert add_mirror(text, ENV, ENGINE) is None


def test_engine_added_to_the_entry_of_the_same_environment():
    before = (
        '{\n'
        '    "domains": ["icds-cas"],\n'
        '    "mirrored_engine_ids": [\n'
        '        {\n'
        '            "server_environment": "icds",\n'
        '            "engine_ids": [\n'
        '                "icds-ucr-old"\n'
        '            ]\n'
        '        }\n'
        '    ],\n'
        '    "config": {"engine_id": "icds-ucr"}\n'
        '}\n')
    after = add_mirror(before, ENV, ENGINE)
    assert added_lines(before, after, ['                "icds-ucr-citus",\n'])
    assert json.loads(after)['mirrored_engine_ids'] == [
        {'server_environment': 'icds', 'engine_ids': ['icds-ucr-citus', 'icds-ucr-old']}]


def test_engine_added_to_a_one_line_entry_stays_on_its_line():
    before = ('{\n  "domains": ["icds-cas"],\n  "mirrored_engine_ids": [\n'
              '    {"server_environment": "icds", "engine_ids": ["icds-ucr-old"]}\n  ],\n'
              '  "config": {"engine_id": "icds-ucr"}\n}\n')
    after = add_mirror(before, ENV, ENGINE)
    assert ('    {"server_environment": "icds", "engine_ids": ["icds-ucr-citus", "icds-ucr-old"]}\n'
            in after)
    assert len(after.splitlines()) == len(before.splitlines())


def test_entry_without_engine_ids_gets_them():
    before = ('{\n  "domains": ["icds-cas"],\n  "mirrored_engine_ids": [\n'
              '    {"server_environment": "icds"}\n  ],\n  "config": {"engine_id": "icds-ucr"}\n}\n')
    after = add_mirror(before, ENV, ENGINE)
    assert json.loads(after)['mirrored_engine_ids'] == [ENTRY]


@pytest.mark.parametrize('empty', ['[]', '[\n    ]'])
def test_empty_mirror_list_is_filled(empty):
    before = ('{\n    "domains": [\n        "icds-cas"\n    ],\n    "mirrored_engine_ids": %s,\n'
              '    "config": {\n        "engine_id": "icds-ucr"\n    }\n}\n' % empty)
    after = add_mirror(before, ENV, ENGINE)
    assert json.loads(after)['mirrored_engine_ids'] == [ENTRY]
    assert '        {\n            "server_environment": "icds",\n' in after


def test_one_line_file_crlf_tabs_and_missing_final_newline():
    minified = '{"domains":["icds-cas"],"server_environment":["icds"],"config":{"engine_id":"icds-ucr"}}'
    after = add_mirror(minified, ENV, ENGINE)
    assert json.loads(after) == dict(json.loads(minified), mirrored_engine_ids=[ENTRY])
    assert '\n' not in after

    crlf = sample('cbe_form.json').replace('\n', '\r\n')
    after = add_mirror(crlf, ENV, ENGINE)
    assert '\n' not in after.replace('\r\n', '')
    assert added_lines(crlf, after, [
        '    "mirrored_engine_ids": [\r\n',
        '        {"server_environment": "icds", "engine_ids": ["icds-ucr-citus"]}\r\n',
        '    ],\r\n',
    ])

    tabs = '{\n\t"domains": [\n\t\t"icds-cas"\n\t],\n\t"config": {\n\t\t"engine_id": "icds-ucr"\n\t}\n}'
    after = add_mirror(tabs, ENV, ENGINE)
    assert added_lines(tabs, after, [
        '\t"mirrored_engine_ids": [\n', '\t\t{\n', '\t\t\t"server_environment": "icds",\n',
        '\t\t\t"engine_ids": [\n', '\t\t\t\t"icds-ucr-citus"\n', '\t\t\t]\n', '\t\t}\n', '\t],\n'])
    assert after.endswith('}') and not after.endswith('\n')


@pytest.mark.parametrize('name', ['cbe_form.json', 'child_health_cases.json', 'ls_vhnd_form.json'])
def test_remove_undoes_add_byte_for_byte(name):
    before = sample(name)
    assert remove_mirror(add_mirror(before, ENV, ENGINE), ENV, ENGINE) == before
    assert remove_mirror(before, ENV, ENGINE) is None


def test_remove_keeps_other_engines_and_environments():
    before = ('{\n  "domains": ["icds-cas"],\n  "mirrored_engine_ids": [\n'
              '    {"server_environment": "india", "engine_ids": ["icds-ucr-citus"]},\n'
              '    {"server_environment": "icds", "engine_ids": ["x", "icds-ucr-citus"]}\n  ],\n'
              '  "config": {"engine_id": "icds-ucr"}\n}\n')
    after = remove_mirror(before, ENV, ENGINE)
    assert json.loads(after)['mirrored_engine_ids'] == [
        {'server_environment': 'india', 'engine_ids': ['icds-ucr-citus']},
        {'server_environment': 'icds', 'engine_ids': ['x']}]


def test_a_mirror_list_that_is_not_a_list_is_an_error():
    with pytest.raises(DataSourceError, match='mirrored_engine_ids is not a list'):
        add_mirror('{"domains": ["icds-cas"], "mirrored_engine_ids": {}, "config": {}}', ENV, ENGINE)


def test_which_files_are_data_sources_to_edit():
    assert skip_reason(json.loads(sample('cbe_form.json')), SPEC) is None
    assert skip_reason(json.loads(sample('child_health_cases.json')), SPEC) is None
    assert skip_reason(json.loads(sample('other_domain_usage.json')), SPEC) == \
        'domains enikshay do not include icds-cas'
    doc = {'domains': ['icds-cas'], 'config': {'engine_id': 'default'}}
    assert skip_reason(doc, SPEC) == 'engine_id default is not icds-ucr'
    assert skip_reason({'domains': ['icds-cas'], 'config': {}}, SPEC) == 'engine_id ucr is not icds-ucr'
    assert skip_reason([1, 2], SPEC).startswith('not a UCR data source')
    assert skip_reason(json.loads(sample('child_health_cases.json')),
                       MirrorSpec(ENV, ENGINE, ('icds-dashboard-qa',))) is None


def test_plan_file_refuses_to_mirror_into_the_own_engine(tmp_path):
    path = tmp_path / 'cbe_form.json'
    path.write_text(sample('cbe_form.json'))
    with pytest.raises(DataSourceError) as err:
        plan_file(str(path), MirrorSpec(ENV, 'icds-ucr', ('icds-cas',)))
    assert str(path) in str(err.value) and "own engine_id" in str(err.value)


def test_plan_file_names_a_broken_file(tmp_path):
    path = tmp_path / 'broken.json'
    path.write_text('{"domains": ["icds-cas"],\n')
    with pytest.raises(DataSourceError, match='broken.json is not valid JSON'):
        plan_file(str(path), SPEC)


def test_plan_file_keeps_a_byte_order_mark(tmp_path):
    path = tmp_path / 'bom.json'
    path.write_bytes(b'\xef\xbb\xbf' + sample('cbe_form.json').encode())
    result = plan_file(str(path), SPEC)
    assert result.status == 'changed' and result.after.startswith('\ufeff{\n')


def test_backup_names_never_look_like_data_sources(tmp_path):
    path = str(tmp_path / 'cbe_form.json')
    name = backup_name(path)
    assert name.startswith(path + '.') and name.endswith('~')
    open(name, 'w').close()
    assert backup_name(path) != name
