"""The Citus line of the pytest summary (tests/citus_summary.py), on a small suite of its own
run by a real pytest: counts by outcome, skip reasons, the citus_cluster fixture counted too."""

import os
import subprocess
import sys

from tests.conftest import ROOT

SUITE = '''
import pytest

@pytest.fixture
def citus_cluster():
    pytest.skip('no citus here')

@pytest.mark.citus
def test_runs():
    pass

@pytest.mark.citus
def test_fails():
    assert False

@pytest.mark.citus
def test_skips():
    pytest.skip('citus extension is not installed')

def test_needs_the_cluster(citus_cluster):
    pass

def test_plain():
    pass
'''


def _run(tmp_path, *args):
    (tmp_path / 'test_suite.py').write_text(SUITE)
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, '-m', 'pytest', '-p', 'tests.citus_summary', '-p', 'no:cacheprovider',
                           '-p', 'no:xdist', '-o', 'markers=citus', '-q', str(tmp_path)] + list(args),
                          capture_output=True, text=True, cwd=str(tmp_path), env=env, timeout=120)


def _citus_lines(res):
    return [line for line in res.stdout.splitlines() if line.startswith('citus tests:')]


def test_counts_ran_and_skipped_with_reasons(tmp_path):
    res = _run(tmp_path)
    assert res.returncode == 1, res.stdout  # test_fails
    assert _citus_lines(res) == [
        'citus tests: 2 ran (1 failed, 1 passed), 2 skipped '
        '(1: citus extension is not installed; 1: no citus here)'], res.stdout


def test_all_skipped_for_one_reason(tmp_path):
    res = _run(tmp_path, '-k', 'skips')
    assert _citus_lines(res) == ['citus tests: 1 skipped (citus extension is not installed)'], res.stdout


def test_none_selected(tmp_path):
    res = _run(tmp_path, '-k', 'plain')
    assert res.returncode == 0
    assert _citus_lines(res) == ['citus tests: none selected'], res.stdout
