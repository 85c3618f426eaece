"""ucr_mirror run for real (module process and ansible CLI) on copies of the sample data sources."""

import json
import os
import shutil
import stat

import pytest

from tests.module_runner import run_adhoc, run_module

SAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       'fixtures', 'ucr_data_sources')
ICDS_FILES = ['cbe_form.json', 'child_health_cases.json', 'ls_vhnd_form.json']
OTHER = 'other_domain_usage.json'
ENTRY = {'server_environment': 'icds', 'engine_ids': ['icds-ucr-citus']}


@pytest.fixture
def sources(tmp_path):
    folder = tmp_path / 'data_sources'
    shutil.copytree(SAMPLES, folder)
    return folder


def args(folder, **kw):
    out = dict(path=str(folder), domains=['icds-cas'], server_environment='icds',
               mirror_engine_id='icds-ucr-citus')
    out.update(kw)
    return out


def snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob('*')) if p.is_file()}


ADDED = {
    'cbe_form.json': [
        '    "mirrored_engine_ids": [\n',
        '        {"server_environment": "icds", "engine_ids": ["icds-ucr-citus"]}\n',
        '    ],\n'],
    'ls_vhnd_form.json': [
        '  "mirrored_engine_ids": [\n',
        '    {"server_environment": "icds", "engine_ids": ["icds-ucr-citus"]}\n',
        '  ],\n'],
    'child_health_cases.json': [
        '        {\n',
        '            "server_environment": "icds",\n',
        '            "engine_ids": [\n',
        '                "icds-ucr-citus"\n',
        '            ]\n',
        '        },\n'],
}


def only_added(before: bytes, after: bytes, block) -> bool:
    """True when ``after`` is ``before`` with the lines ``block`` inserted at one place."""
    old, new = before.decode().splitlines(True), after.decode().splitlines(True)
    return any(old[:k] + block + old[k:] == new for k in range(len(old) + 1))


def test_mirrors_the_three_icds_sources_and_leaves_the_rest(sources):
    original = snapshot(sources)

    run = run_module('ucr_mirror', args(sources), diff=True)

    assert not run.get('failed'), run
    assert run['changed']
    assert sorted(os.path.basename(p) for p in run['changed_files']) == ICDS_FILES
    assert [os.path.basename(p) for p in run['skipped_files']] == [OTHER]
    assert run['unchanged_files'] == []
    assert run['skip_reasons'] == {str(sources / OTHER): 'domains enikshay do not include icds-cas'}
    assert (sources / OTHER).read_bytes() == original[OTHER]

    for name in ICDS_FILES:
        new = (sources / name).read_bytes()
        assert only_added(original[name], new, ADDED[name]), new.decode()
        doc = json.loads(new)
        assert ENTRY in doc['mirrored_engine_ids']
        assert {k: v for k, v in doc.items() if k != 'mirrored_engine_ids'} == \
            {k: v for k, v in json.loads(original[name]).items() if k != 'mirrored_engine_ids'}
        assert new.endswith(b'}\n')

    chc = json.loads((sources / 'child_health_cases.json').read_bytes())
    assert {'server_environment': 'india', 'engine_ids': ['icds-test-ucr']} in chc['mirrored_engine_ids']
    assert len(chc['mirrored_engine_ids']) == 2

    # the module's diff is the same change, one entry per file
    assert sorted(d['before_header'] for d in run['diff']) == sorted(run['changed_files'])
    for d in run['diff']:
        assert d['after'].encode() == open(d['after_header'], 'rb').read()
        assert d['before'].encode() == original[os.path.basename(d['before_header'])]

    again = run_module('ucr_mirror', args(sources))
    assert not again['changed']
    assert sorted(os.path.basename(p) for p in again['unchanged_files']) == ICDS_FILES
    assert again['changed_files'] == []


def test_check_mode_reports_and_writes_nothing(sources):
    original = snapshot(sources)
    run = run_module('ucr_mirror', args(sources), check=True, diff=True)
    assert run['changed'] and len(run['changed_files']) == 3 and len(run['diff']) == 3
    assert all('"icds-ucr-citus"' in d['after'] and '"icds-ucr-citus"' not in d['before']
               for d in run['diff'])
    assert snapshot(sources) == original


def test_a_broken_file_stops_the_run_before_any_write(sources):
    (sources / 'zz_broken.json').write_text('{"domains": ["icds-cas"], "config": {\n')
    original = snapshot(sources)
    run = run_module('ucr_mirror', args(sources))
    assert run['failed'] and not run['changed']
    assert 'zz_broken.json is not valid JSON' in run['msg']
    assert snapshot(sources) == original


def test_mirroring_into_the_own_engine_is_refused(sources):
    original = snapshot(sources)
    run = run_module('ucr_mirror', args(sources, mirror_engine_id='icds-ucr'))
    assert run['failed']
    assert 'cbe_form.json' in run['msg'] and "own engine_id" in run['msg']
    assert snapshot(sources) == original


def test_backup_mode_and_recursion(sources):
    sub = sources / 'nested'
    sub.mkdir()
    shutil.copy(sources / 'cbe_form.json', sub / 'cbe_form_copy.json')
    os.chmod(sources / 'cbe_form.json', 0o640)
    original = snapshot(sources)

    run = run_module('ucr_mirror', args(sources, backup=True))
    assert str(sub / 'cbe_form_copy.json') not in run['changed_files']
    assert (sub / 'cbe_form_copy.json').read_bytes() == original['nested/cbe_form_copy.json']
    assert stat.S_IMODE(os.stat(sources / 'cbe_form.json').st_mode) == 0o640

    backups = run['backup_files']
    assert sorted(backups) == sorted(run['changed_files'])
    for path, backup in backups.items():
        assert backup.endswith('~') and os.path.dirname(backup) == os.path.dirname(path)
        assert open(backup, 'rb').read() == original[os.path.basename(path)]
    assert not [p for p in os.listdir(sources) if p.endswith('.tmp')]

    deep = run_module('ucr_mirror', args(sources, recursive=True))
    assert deep['changed_files'] == [str(sub / 'cbe_form_copy.json')]
    assert ENTRY in json.loads((sub / 'cbe_form_copy.json').read_bytes())['mirrored_engine_ids']


def test_state_absent_restores_the_originals_byte_for_byte(sources):
    original = snapshot(sources)
    run_module('ucr_mirror', args(sources))
    run = run_module('ucr_mirror', args(sources, state='absent'))
    assert run['changed'] and len(run['changed_files']) == 3
    assert snapshot(sources) == original
    assert not run_module('ucr_mirror', args(sources, state='absent'))['changed']


def test_through_the_ansible_cli(sources):
    original = snapshot(sources)
    dry = run_adhoc('ucr_mirror', args(sources), check=True)
    assert dry['changed'] and len(dry['changed_files']) == 3
    assert snapshot(sources) == original

    real = run_adhoc('ucr_mirror', args(sources, engine_id='icds-ucr'))
    assert real['changed'] and sorted(os.path.basename(p) for p in real['changed_files']) == ICDS_FILES
    assert not run_adhoc('ucr_mirror', args(sources))['changed']
