#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: wait_for_copy
short_description: Wait for a background migrate_tables job and show its progress
description:
  - Polls an C(async) M(icds.citus_migration.migrate_tables) job and, at every poll, prints the
    progress recorded in its manifest (tables migrated, running, errored, rows copied), then the
    progress by data the running copy reports (data done of the source size, the recent rate,
    the ETA from that rate) and each table in flight with its bytes and time so far.
  - Returns the job's own result once it has finished, and fails when the job failed.
  - This is an action plugin; the work happens on the host that runs the copy.
version_added: 0.1.0
author: icds.citus_migration maintainers (@icds)
options:
  jid:
    description: The C(ansible_job_id) of the async copy task.
    type: str
    required: true
  path:
    description: The manifest the job copies from.
    type: str
    required: true
  interval:
    description: Seconds between polls.
    type: int
    default: 30
  timeout:
    description: Give up waiting after this many seconds (the job goes on). V(0) waits forever.
    type: int
    default: 0
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Skips, since no job was started.
  action:
    description: Indicates this has a corresponding action plugin so some parts of the options can be executed on the controller.
    support: full
  async:
    description: Supports being used with the C(async) keyword.
    support: none
  bypass_host_loop:
    description: Forces a 'global' task that does not execute per host.
    support: none
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
  platform:
    description: Target OS/families that can be operated against.
    support: N/A
    platforms: posix
seealso:
  - module: icds.citus_migration.migrate_tables
  - module: icds.citus_migration.migration_status
'''

EXAMPLES = r'''
- name: Copy in the background
  icds.citus_migration.migrate_tables:
    path: /opt/migration/icds-ucr.db
    source: "{{ source_conn }}"
  async: 604800
  poll: 0
  register: copy_job

- name: Wait for the copy, showing progress
  icds.citus_migration.wait_for_copy:
    jid: "{{ copy_job.ansible_job_id }}"
    path: /opt/migration/icds-ucr.db
    interval: 60
'''

RETURN = r'''
progress:
  description: The manifest's totals when the job finished (see M(icds.citus_migration.migration_status)).
  returned: success
  type: dict
status:
  description:
    - What C(migrate_tables status --json) gives once the job has finished, from
      M(icds.citus_migration.migration_status).
    - C(stats) (totals), C(live) (null once the copy ended), C(tables) (one entry per table with
      rows, bytes, duration and throughput), C(months) (totals per month), C(errors) (errored
      tables with SQLSTATE and message).
  returned: success
  type: dict
copied:
  description: The job's result keys (C(copied), C(errored), C(tables)...) as returned by M(icds.citus_migration.migrate_tables).
  returned: success
  type: int
'''
