"""``status list / months / errors / report`` on a real manifest from a real copy."""

import base64
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.integration.copy_helpers import CLI, cli_conn_args, run_cli
from tools.testkit.skewed_dataset import BIG, BROKEN, gate_target, load_skewed, skewed_manifest
from ansible_collections.icds.citus_migration.plugins.module_utils.common.pg_connection import connect

GATE_KEY = 4242
OLD_HEADERS = ['Source Table', 'Table Date', 'Migrated', 'Errored', 'Target Table']


@pytest.fixture
def copied(dbs, tmp_path):
    """A finished copy with one errored table (its target column is too narrow)."""
    rows = load_skewed(dbs, big_rows=20000, small_tables=8, broken=True)
    dbs.manifest = skewed_manifest(str(tmp_path / 'manifest.db'), rows)
    res = run_cli(['migrate', '--yes', '--no-stop-on-error', '--parallel', '2']
                  + cli_conn_args(dbs) + [dbs.manifest])
    assert res.returncode == 1, res.stdout + res.stderr  # the broken table failed
    return dbs


def _status(dbs, *args):
    res = run_cli(['status', dbs.manifest] + list(args))
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def _manifest_dates(path):
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute('SELECT source_table, date FROM tables'))
    finally:
        conn.close()


def test_list_shows_rows_bytes_duration_after_the_old_columns(copied):
    text = _status(copied, 'list').splitlines()
    headers = [c.strip() for c in text[0].split('|')]
    assert headers == OLD_HEADERS + ['Rows Copied', 'Bytes', 'Duration', 'Throughput']
    lines = {l.split('|')[0].strip(): [c.strip() for c in l.split('|')] for l in text[2:]}
    for table in BIG:
        cells = lines[table]
        assert cells[2] == 'True' and cells[5] == copied.src_sql('SELECT count(*) FROM "%s"' % table).strip()
        assert re.match(r'^[\d.]+ [kMG]?B$', cells[6]) and re.match(r'^(\d+\.\d\ds|\d+:\d\d:\d\d)$', cells[7])
        assert re.match(r'^[\d.]+ [kMG]?B/s$', cells[8]), cells
    assert lines[BROKEN][2:4] == ['False', 'True'] and lines[BROKEN][5] == ''
    items = {i['source_table']: i for i in json.loads(_status(copied, 'list', '--json'))}
    for table in BIG:
        item = items[table]
        assert item['rows_copied'] == int(copied.src_sql('SELECT count(*) FROM "%s"' % table))
        assert item['duration_s'] > 0 and item['bytes_copied'] > 0 and not item['running']
        assert item['throughput_bytes_per_s'] == pytest.approx(item['bytes_copied'] / item['duration_s'], rel=1e-3)


def test_months_totals_match_the_manifest(copied):
    months = json.loads(_status(copied, 'months', '--json'))
    dates = _manifest_dates(copied.manifest)
    expected = {}
    for table, date in dates.items():
        m = expected.setdefault(date[:7], {'tables': 0, 'errored': 0, 'migrated': 0})
        m['tables'] += 1
        m['errored' if table == BROKEN else 'migrated'] += 1
    assert {m['month']: {k: m[k] for k in ('tables', 'errored', 'migrated')} for m in months} == expected
    assert all(m['left'] == 0 and m['running'] == 0 for m in months)
    big_month = next(m for m in months if m['month'] == BIG[0][-10:-3])
    assert big_month['rows_copied'] >= 20000
    # with the source, the source bytes done / left / errored per month
    with_source = json.loads(_status(copied, 'months', '--json', '-D', copied.source_db, '-O', '127.0.0.1',
                                     '-U', 'postgres', '--source-port', str(copied.source_server.port)))
    broken_month = next(m for m in with_source if m['month'] == '2020-03')
    assert broken_month['source_bytes_errored'] > 0 and broken_month['source_bytes_left'] == 0
    text = _status(copied, 'months')
    assert text.splitlines()[0].startswith('Month') and '2020-03' in text


def test_errors_show_sqlstate_and_message_from_the_error_log(copied):
    errors = json.loads(_status(copied, 'errors', '--json'))
    assert [(e['source_table'], e['sqlstate']) for e in errors] == [(BROKEN, '22001')]
    assert 'too long' in errors[0]['message'] and errors[0]['failed_at']
    text = _status(copied, 'errors')
    assert BROKEN in text and '22001' in text and 'too long' in text
    # -M: nothing errored among the migrated
    assert _status(copied, 'errors', '-M').strip() == 'No errored table.'


def test_stats_json_has_no_live_run_after_the_copy(copied):
    data = json.loads(_status(copied, 'stats', '--json'))
    assert data['live'] is None and data['errored'] == 1
    assert _status(copied, 'stats').splitlines()[:3] == [
        'Total: 11', 'Migrated: 10 (90.9%)', 'Errored: 1 (9.1%)']


def test_watch_refreshes_until_interrupted(copied):
    proc = subprocess.Popen([sys.executable, CLI, 'status', copied.manifest, 'months', '--watch', '0.2'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    refreshes = 0
    try:
        for line in proc.stdout:
            refreshes += line.startswith('Month ')
            if refreshes == 3:
                break
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert refreshes == 3 and proc.returncode == 0, err


def test_watch_json_prints_one_document_per_line(copied):
    proc = subprocess.Popen([sys.executable, CLI, 'status', copied.manifest, 'errors', '--json',
                             '--watch', '0.2'], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    docs = []
    try:
        for line in proc.stdout:
            docs.append(json.loads(line))
            if len(docs) == 2:
                break
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert [[e['source_table'] for e in d] for d in docs] == [[BROKEN], [BROKEN]]
    assert proc.returncode == 0


def test_bad_status_flags_say_what_is_wrong(copied, tmp_path):
    res = run_cli(['status', copied.manifest, 'report'])
    assert res.returncode == 2 and 'status report needs --output FILE' in res.stderr
    res = run_cli(['status', copied.manifest, 'list', '--watch', '0'])
    assert res.returncode == 2 and '--watch must be a number of seconds above 0' in res.stderr
    res = run_cli(['status', copied.manifest, 'report', '--output', str(tmp_path / 'no' / 'r.html')])
    assert res.returncode == 2 and 'cannot write the report to' in res.stderr
    assert not os.path.exists(str(tmp_path / 'no'))


def test_list_during_a_copy_shows_running_tables_so_far(dbs, tmp_path):
    rows = load_skewed(dbs, big_rows=50000, small_tables=4)
    gate_target(dbs, BIG[0], 40000, GATE_KEY)
    dbs.manifest = skewed_manifest(str(tmp_path / 'manifest.db'), rows)
    gate = connect(dbs.target, 'target')
    gate.autocommit = True
    with gate.cursor() as cur:
        cur.execute('SELECT pg_advisory_lock(%s)', (GATE_KEY,))
    proc = run_cli(['migrate', '--yes', '--parallel', '2'] + cli_conn_args(dbs) + [dbs.manifest],
                   background=True)
    try:
        deadline = time.monotonic() + 120
        running = []
        while not running and time.monotonic() < deadline and proc.poll() is None:
            items = json.loads(_status(dbs, 'list', '--json'))
            running = [i for i in items if i['running'] and (i.get('bytes_so_far') or 0) > 0]
        assert running, 'no table seen in flight with bytes'
        assert running[0]['source_table'] == BIG[0] and running[0]['running_s'] >= 0
        text = _status(dbs, 'list')
        assert re.search(r'running .* so far', text), text
        stats = json.loads(_status(dbs, 'stats', '--json'))
        assert stats['live'] and stats['live']['workers'], stats
        assert 'Copy running: ' in _status(dbs, 'stats')
        assert BIG[0] in _status(dbs, 'stats').splitlines()[-1]
    finally:
        gate.close()  # releases the lock: the copy goes on
        out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err


@pytest.fixture
def report(copied, tmp_path):
    path = str(tmp_path / 'report.html')
    out = _status(copied, 'report', '--output', path)
    assert out.strip() == 'Report written to %s' % path
    return path


def test_report_holds_two_png_charts_and_the_errors(report):
    text = open(report, encoding='utf-8').read()
    pngs = re.findall(r'<img id="chart-(\w+)" alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert [p[0] for p in pngs] == ['progress', 'throughput']
    for dummy, data in pngs:
        assert base64.b64decode(data)[:8] == b'\x89PNG\r\n\x1a\n'
    assert BROKEN in text and '22001' in text
    assert 'http://' not in text and 'https://' not in text and '<script' not in text  # no network


def test_report_opens_in_headless_chromium(report, tmp_path):
    browser = shutil.which('chromium') or shutil.which('chromium-browser')
    if not browser:
        pytest.skip('chromium is not installed (apt-get install chromium): report not opened in a browser')
    # a probe added to a copy of the page records each image's decoded width once loaded
    probe = str(tmp_path / 'probe.html')
    text = open(report, encoding='utf-8').read().replace('</body>', (
        "<script>window.addEventListener('load', function () {document.body.setAttribute("
        "'data-widths', Array.prototype.map.call(document.images, function (i) {"
        "return i.naturalWidth;}).join(','));});</script></body>"))
    open(probe, 'w', encoding='utf-8').write(text)
    res = subprocess.run([browser, '--headless=new', '--no-sandbox', '--disable-gpu',
                          '--user-data-dir=%s' % (tmp_path / 'chromium'), '--enable-logging=stderr',
                          '--v=0', '--virtual-time-budget=5000', '--dump-dom', 'file://' + probe],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    widths = re.search(r'data-widths="([\d,]*)"', res.stdout)
    assert widths, res.stdout[:2000]
    assert len(widths.group(1).split(',')) == 2 and all(int(w) > 300 for w in widths.group(1).split(','))
    assert 'CONSOLE' not in res.stderr, [l for l in res.stderr.splitlines() if 'CONSOLE' in l]
