#!/usr/bin/env python3
"""The one-command local run: `make demo` (up + run), `make demo-clean` (clean).

  up        start (or reuse) the local servers under .demo/ and load the synthetic data:
            two source PostgreSQL databases (icds-ucr, icds-aggregate), the target (a Citus
            coordinator + 2 workers when the citus extension is installed, plain PostgreSQL
            otherwise), an in-memory CouchDB-compatible toggle store (pouchdb-server), a
            CommCare localsettings.py and a UCR data source folder, and an "application"
            that writes new rows to both databases once ENABLE_UCR_MIRRORS is on.
  run       ansible-playbook playbooks/site.yml on inventories/local, then the status tables.
  down      stop the servers.   clean   stop them and remove .demo/.

Environment: DEMO_DIR (default .demo), DEMO_PORT_OFFSET (added to the inventory's ports, so a
second environment, e.g. molecule's, runs beside the demo), DEMO_MONTHS and DEMO_SCALE (size
of the synthetic data: months of child tables, rows per child).
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, '.cache', 'dev_collections'))

import yaml  # noqa: E402

DEMO = os.path.abspath(os.environ.get('DEMO_DIR') or os.path.join(ROOT, '.demo'))
PORT_OFFSET = int(os.environ.get('DEMO_PORT_OFFSET') or 0)
MONTHS = os.environ.get('DEMO_MONTHS') or '3'
SCALE = os.environ.get('DEMO_SCALE') or '200'
VENV_BIN = os.path.join(ROOT, '.venv', 'bin')
INVENTORY = os.path.join(ROOT, 'inventories', 'local')
UCR_SAMPLES = os.path.join(ROOT, 'tests', 'fixtures', 'ucr_data_sources')
DOMAIN_ITEM = 'domain:icds-cas'
SOURCES = {'icds-ucr': 'commcarehq_icds_ucr', 'icds-aggregate': 'commcarehq_icds_aggregatedata'}
TARGET_DB = 'icds_ucr_citus'
# The aggregate database keeps the agg_* families; the UCR database everything else.
AGG_FAMILIES = ('agg_awc', 'agg_child_health', 'agg_awc_daily')


def _link_collection():
    ns = os.path.join(ROOT, '.cache', 'dev_collections', 'ansible_collections', 'icds')
    os.makedirs(ns, exist_ok=True)
    if not os.path.islink(os.path.join(ns, 'citus_migration')):
        os.symlink(ROOT, os.path.join(ns, 'citus_migration'))


_link_collection()
from tools.testkit.pg_cluster import PgServer, citus_available  # noqa: E402


def say(msg):
    print('[demo] %s' % msg, flush=True)


def ports():
    """The inventory's demo ports (group_vars/all/demo.yml: '{{ 25431 + offset }}'), shifted."""
    with open(os.path.join(INVENTORY, 'group_vars', 'all', 'demo.yml')) as handle:
        base = yaml.safe_load(handle)['demo_ports']

    def port(text):
        return int(re.search(r'(\d+) \+ demo_port_offset', str(text)).group(1)) + PORT_OFFSET
    return {k: ([port(p) for p in v] if isinstance(v, list) else port(v)) for k, v in base.items()}


def server(name, port, preload=None):
    conf = {'citus.node_conninfo': "'sslmode=prefer'"} if preload else None
    return PgServer(name, base_dir=os.path.join(DEMO, 'pg', name), preload=preload,
                    extra_conf=conf, port=port)


def ensure_server(srv):
    if not srv.exists():
        srv.init()
    if not srv.is_running():
        srv.start()
    srv.wait_ready()
    return srv


def db_exists(srv, name):
    return srv.psql("SELECT 1 FROM pg_database WHERE datname = '%s'" % name).strip() == '1'


def table_count(srv, db):
    return int(srv.psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", db).strip())


def load_sources(p):
    srv = ensure_server(server('source', p['source']))
    agg = ensure_server(server('aggregate', p['aggregate']))
    for alias, srv_, keep_agg in (('icds-ucr', srv, False), ('icds-aggregate', agg, True)):
        db = SOURCES[alias]
        if not db_exists(srv_, db):
            srv_.psql('CREATE DATABASE "%s"' % db)
        if table_count(srv_, db):
            say('%s: data already loaded (%d tables)' % (alias, table_count(srv_, db)))
            continue
        subprocess.run([sys.executable, '-m',
                        'tools.testkit.synthetic_dataset',
                        '--host', '127.0.0.1', '--port', str(srv_.port), '--user', 'postgres',
                        '--dbname', db, '--months', MONTHS, '--scale', SCALE,
                        '--ucr-folder', UCR_SAMPLES], check=True, cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
        families = set(AGG_FAMILIES)
        tables = srv_.psql("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                           "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition "
                           "AND NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid)", db).split()
        drop = [t for t in tables if (t in families) != keep_agg]
        if keep_agg:
            drop = [t for t in tables if t not in families]
        for table in drop:
            srv_.psql('DROP TABLE "%s" CASCADE' % table.replace('"', '""'), db)
        srv_.psql('ANALYZE', db)
        say('%s: loaded the synthetic ICDS data (%d tables)' % (alias, table_count(srv_, db)))
    return srv, agg


def start_target(p):
    if citus_available():
        nodes = [ensure_server(server('coordinator', p['coordinator'], 'citus'))]
        nodes += [ensure_server(server('worker%d' % i, port, 'citus')) for i, port in enumerate(p['workers'])]
        for node in nodes:
            if not db_exists(node, TARGET_DB):
                node.psql('CREATE DATABASE "%s"' % TARGET_DB)
            node.psql('CREATE EXTENSION IF NOT EXISTS citus', TARGET_DB)
        coord = nodes[0]
        coord.psql("SELECT citus_set_coordinator_host('127.0.0.1', %d)" % coord.port, TARGET_DB)
        for worker in nodes[1:]:
            known = coord.psql("SELECT count(*) FROM pg_dist_node WHERE nodeport = %d" % worker.port, TARGET_DB)
            if known.strip() == '0':
                coord.psql("SELECT citus_add_node('127.0.0.1', %d)" % worker.port, TARGET_DB)
        say('target: Citus coordinator on port %d with %d workers' % (coord.port, len(nodes) - 1))
        return coord, True
    coord = ensure_server(server('coordinator', p['coordinator']))
    if not db_exists(coord, TARGET_DB):
        coord.psql('CREATE DATABASE "%s"' % TARGET_DB)
    say('target: plain PostgreSQL on port %d (the citus extension is not installed here; '
        'tables are created but not distributed)' % coord.port)
    return coord, False


def couch_alive(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_couch(p):
    url = 'http://127.0.0.1:%d/' % p['couchdb']
    if not couch_alive(url):
        binary = os.environ.get('POUCHDB_SERVER') or os.path.join(ROOT, '.cache', 'node', 'node_modules', '.bin', 'pouchdb-server')
        if not os.path.exists(binary):
            raise SystemExit('pouchdb-server is not installed: run `make deps`')
        workdir = os.path.join(DEMO, 'couch')
        os.makedirs(workdir, exist_ok=True)
        log = open(os.path.join(workdir, 'server.log'), 'ab')
        proc = subprocess.Popen([binary, '--in-memory', '--port', str(p['couchdb']), '--host', '127.0.0.1',
                                 '--no-stdout-logs', '--no-color'], cwd=workdir, stdout=log, stderr=log,
                                start_new_session=True)
        with open(os.path.join(workdir, 'pid'), 'w') as handle:
            handle.write(str(proc.pid))
        for _ in range(100):
            if couch_alive(url):
                break
            time.sleep(0.2)
        else:
            raise SystemExit('pouchdb-server did not start; see .demo/couch/server.log')
    req = urllib.request.Request(url + 'commcarehq', method='PUT')
    try:
        urllib.request.urlopen(req, timeout=5)
    except urllib.error.HTTPError as exc:
        if exc.code != 412:  # 412: exists already
            raise
    say('toggle store: pouchdb-server (in memory) on port %d' % p['couchdb'])


def prepare_files():
    ucr = os.path.join(DEMO, 'ucr_data_sources')
    if not os.path.isdir(ucr):
        shutil.copytree(UCR_SAMPLES, ucr)
    hq = os.path.join(DEMO, 'commcare-hq')
    os.makedirs(hq, exist_ok=True)
    settings = os.path.join(hq, 'localsettings.py')
    if not os.path.exists(settings):
        with open(settings, 'w') as handle:
            handle.write("# CommCare HQ local settings (demo)\n"
                         "DATABASES = {'default': {'ENGINE': 'django.db.backends.postgresql', 'NAME': 'commcarehq'}}\n"
                         "REPORTING_DATABASES = {'default': 'default', 'ucr': 'ucr'}\n")
    os.makedirs(os.path.join(DEMO, 'work'), exist_ok=True)


def ucr_validation_table(src):
    names = src.psql("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                     "WHERE n.nspname = 'public' AND c.relname LIKE 'ucr\\_icds-cas\\_%' "
                     "AND NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid) "
                     "AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'inserted_at') "
                     "ORDER BY 1 LIMIT 1", SOURCES['icds-ucr']).split()
    return names[0] if names else None


def write_vars(is_citus, table):
    data = {'citus_migration_require_citus': is_citus,
            'citus_migration_validate_tables': {'icds-ucr': [table] if table else []}}
    with open(os.path.join(DEMO, 'demo_vars.yml'), 'w') as handle:
        yaml.safe_dump(data, handle)
    with open(os.path.join(DEMO, 'app.json'), 'w') as handle:
        json.dump({'table': table}, handle)


def start_app(p):
    pidfile = os.path.join(DEMO, 'app.pid')
    if os.path.exists(pidfile):
        try:
            os.kill(int(open(pidfile).read()), 0)
            return
        except (OSError, ValueError):
            pass
    log = open(os.path.join(DEMO, 'app.log'), 'ab')
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), 'app'], stdout=log, stderr=log,
                            start_new_session=True, cwd=ROOT)
    with open(pidfile, 'w') as handle:
        handle.write(str(proc.pid))


def app():
    """The application: while ENABLE_UCR_MIRRORS is on for icds-cas, every 2 s one new UCR row
    is written to the source and, through the mirror, the same row to the target."""
    from datetime import datetime, timezone
    import psycopg2
    from psycopg2 import sql
    p = ports()
    table = json.load(open(os.path.join(DEMO, 'app.json')))['table']
    url = 'http://127.0.0.1:%d/commcarehq/hqFeatureToggle-enable_ucr_mirrors' % p['couchdb']
    n = 0
    while table:
        time.sleep(2)
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                doc = json.loads(resp.read())
        except (urllib.error.URLError, OSError, ValueError):
            continue
        if DOMAIN_ITEM not in doc.get('enabled_users', []):
            continue
        n += 1
        stamp = datetime.now(timezone.utc)
        for port, db in ((p['source'], SOURCES['icds-ucr']), (p['coordinator'], TARGET_DB)):
            try:
                conn = psycopg2.connect(host='127.0.0.1', port=port, user='postgres', dbname=db)
                with conn, conn.cursor() as cur:
                    cur.execute(sql.SQL('SELECT * FROM {} LIMIT 0').format(sql.Identifier(table)))
                    cols = [d[0] for d in cur.description]
                    exprs = [sql.Placeholder('doc') if c == 'doc_id' else
                             sql.Placeholder('at') if c == 'inserted_at' else sql.Identifier(c) for c in cols]
                    cur.execute(sql.SQL('INSERT INTO {t} ({cols}) SELECT {exprs} FROM {t} ORDER BY doc_id LIMIT 1').format(
                        t=sql.Identifier(table), cols=sql.SQL(', ').join(map(sql.Identifier, cols)),
                        exprs=sql.SQL(', ').join(exprs)), {'doc': 'app-%d-%d' % (os.getpid(), n), 'at': stamp})
                conn.close()
            except Exception as exc:  # keep writing; .demo/app.log shows why a write failed
                print('app: %s: %s' % (db, exc), flush=True)


def up():
    p = ports()
    os.makedirs(DEMO, exist_ok=True)
    src, _ = load_sources(p)
    _, is_citus = start_target(p)
    start_couch(p)
    prepare_files()
    write_vars(is_citus, ucr_validation_table(src))
    start_app(p)


def run():
    env = dict(os.environ)
    env['ANSIBLE_COLLECTIONS_PATH'] = os.path.join(ROOT, '.collections')
    env.setdefault('ANSIBLE_FORCE_COLOR', '1' if sys.stdout.isatty() else '0')
    cmd = [os.path.join(VENV_BIN, 'ansible-playbook'), '-i', os.path.join(INVENTORY, 'inventory.ini'),
           os.path.join(ROOT, 'playbooks', 'site.yml')]
    cmd += sys.argv[2:]
    say(' '.join(cmd[0:1] + [os.path.relpath(c, ROOT) if c.startswith(ROOT) else c for c in cmd[1:]]))
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True, bufsize=1)
    changed = 0
    for line in proc.stdout:
        sys.stdout.write(line)
        found = re.search(r'\bchanged=(\d+)', re.sub(r'\x1b\[[0-9;]*m', '', line))
        if found and ' : ok=' in re.sub(r'\x1b\[[0-9;]*m', '', line):
            changed += int(found.group(1))
    if proc.wait() != 0:
        say('the playbook failed (exit %d)' % proc.returncode)
        return proc.returncode
    say('the playbook changed nothing: the environment already was as it should be'
        if changed == 0 else 'the playbook made %d changes' % changed)
    for alias in SOURCES:
        manifest = os.path.join(DEMO, 'work', alias + '.db')
        if os.path.exists(manifest):
            say('status of %s (%s):' % (alias, os.path.relpath(manifest, ROOT)))
            subprocess.run([sys.executable, os.path.join(ROOT, 'bin', 'migrate_tables'), 'status', manifest, 'stats'])
    return 0


def down():
    for name in ('app.pid', os.path.join('couch', 'pid')):
        path = os.path.join(DEMO, name)
        if os.path.exists(path):
            try:
                os.killpg(int(open(path).read()), signal.SIGTERM)
            except (OSError, ValueError):
                pass
            os.remove(path)
    pgdir = os.path.join(DEMO, 'pg')
    if os.path.isdir(pgdir):
        for name in os.listdir(pgdir):
            PgServer(name, base_dir=os.path.join(pgdir, name), port=1).stop('fast')


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else 'up'
    if cmd == 'up':
        up()
    elif cmd == 'run':
        return run()
    elif cmd == 'app':
        app()
    elif cmd == 'down':
        down()
    elif cmd == 'clean':
        down()
        shutil.rmtree(DEMO, ignore_errors=True)
        say('removed .demo/')
    else:
        raise SystemExit(__doc__)
    return 0


if __name__ == '__main__':
    sys.exit(main())
