# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Wait for an async migrate_tables job, printing the manifest's progress while it runs."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import time

from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

display = Display()


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(('jid', 'path', 'interval', 'timeout'))

    def _status(self, jid, async_dir, task_vars, mode='status'):
        return self._execute_module(module_name='ansible.legacy.async_status', task_vars=task_vars,
                                    module_args={'jid': jid, 'mode': mode, '_async_dir': async_dir})

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
                stats = progress['stats']
                line = ('[%s] %s: %d of %d tables migrated (%.1f%%), %d running, %d errored, %d rows copied'
                        % (host, args['path'], stats['migrated'], stats['total'], stats['migrated_pct'],
                           stats['running'], stats['errored'], stats['rows_copied']))
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
