# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Wait for an async migrate_tables job, printing the manifest's progress while it runs."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import time
from typing import Optional

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

display = Display()


def _size(n) -> str:
    n = float(n or 0)
    for unit in ('B', 'kB', 'MB', 'GB', 'TB'):
        if abs(n) < 1024 or unit == 'TB':
            return ('%.0f %s' if unit == 'B' else '%.1f %s') % (n, unit)
        n /= 1024.0


def _hms(seconds) -> str:
    if seconds is None:
        return 'unknown'
    seconds = int(max(0, seconds))
    return '%d:%02d:%02d' % (seconds // 3600, seconds % 3600 // 60, seconds % 60)


def progress_line(host: str, path: str, stats: dict, live: Optional[dict]) -> str:
    """The old line by tables, then (while a copy runs) data done, the recent rate, the ETA
    and the tables in flight with how far each has got."""
    line = ('[%s] %s: %d of %d tables migrated (%.1f%%), %d running, %d errored, %d rows copied'
            % (host, path, stats['migrated'], stats['total'], stats['migrated_pct'],
               stats['running'], stats['errored'], stats['rows_copied']))
    if not live:
        return line
    size = live.get('bytes') or {}
    total = size.get('total_estimate') or 0
    fraction = live.get('fraction') or 0
    rate = live.get('rate_bytes_per_s')
    flight = ', '.join('%s%s %s of ~%s, %s' % (
        w.get('source_table'), ' (part)' if w.get('part') else '', _size(w.get('bytes_sent')),
        _size(w.get('estimate_bytes')), _hms(w.get('elapsed_s'))) for w in live.get('workers') or [])
    return '%s | data %d%% (%s of %s), %s/s, ETA %s; in flight: %s' % (
        line, int(fraction * 100), _size(total * fraction), _size(total),
        _size(rate) if rate is not None else '-', _hms(live.get('eta_s')), flight or 'none')


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(('jid', 'path', 'interval', 'timeout'))

    def _status(self, jid, async_dir, task_vars, mode='status'):
        return self._execute_module(module_name='ansible.legacy.async_status', task_vars=task_vars,
                                    module_args={'jid': jid, 'mode': mode, '_async_dir': async_dir})

    def _final_status(self, path, task_vars):
        """What ``migrate_tables status --json`` gives: stats, tables, months, errors."""
        res = self._execute_module(module_name='icds.citus_migration.migration_status',
                                   module_args={'path': path, 'list': True, 'months': True,
                                                'errors': True}, task_vars=task_vars)
        if res.get('failed'):
            return {'failed': True, 'msg': res.get('msg')}
        return dict((k, res.get(k)) for k in ('stats', 'live', 'tables', 'months', 'errors'))

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        dummy, args = self.validate_argument_spec(argument_spec={
            'jid': {'type': 'str', 'required': True},
            'path': {'type': 'str', 'required': True},
            'interval': {'type': 'int', 'default': 30},
            'timeout': {'type': 'int', 'default': 0},
        })
        if self._task.check_mode:
            result.update(changed=False, skipped=True, msg='check mode: no copy job to wait for')
            return result
        host = task_vars.get('inventory_hostname', '')
        async_dir = self._remote_expand_user(self.get_shell_option('async_dir', default='~/.ansible_async'))
        started = time.time()
        last_line = None
        while True:
            status = self._status(args['jid'], async_dir, task_vars)
            progress = self._execute_module(module_name='icds.citus_migration.migration_status',
                                            module_args={'path': args['path']}, task_vars=task_vars)
            if not progress.get('failed'):
                line = progress_line(host, args['path'], progress['stats'], progress.get('live'))
                if line != last_line:
                    display.display(line)
                    last_line = line
            if status.get('finished'):
                self._status(args['jid'], async_dir, task_vars, mode='cleanup')
                job = dict((k, v) for k, v in status.items()
                           if k not in ('ansible_job_id', 'started', 'finished', 'results_file',
                                        'erased', '_ansible_parsed'))
                result.update(job)
                result['progress'] = progress.get('stats')
                result['status'] = self._final_status(args['path'], task_vars)
                return result
            if status.get('failed') and not status.get('started', True):
                result.update(failed=True, msg='cannot read the copy job %s: %s'
                              % (args['jid'], status.get('msg')))
                return result
            if args['timeout'] and time.time() - started > args['timeout']:
                result.update(failed=True, msg='the copy job %s is still running after %ds; it goes on '
                              'in the background: run this task again to keep waiting'
                              % (args['jid'], args['timeout']))
                return result
            time.sleep(max(1, args['interval']))
