#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: icds.citus_migration contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: ucr_mirror
short_description: Add or remove a mirror engine in CommCare's static UCR data source files
description:
  - Edits every static UCR data source JSON file in a folder whose C(domains) include one of
    O(domains) and whose C(config.engine_id) is O(engine_id), so that its top-level
    C(mirrored_engine_ids) list has an entry whose C(server_environment) is
    O(server_environment) and whose C(engine_ids) include O(mirror_engine_id).
  - Idempotent. An entry for O(server_environment) that already lists O(mirror_engine_id) counts
    as present; an entry for that environment with other engines gets O(mirror_engine_id) added
    to its C(engine_ids).
  - The files are code, so the edit is textual and minimal. The result differs from the original
    only by the added lines, written in the file's own indentation (2 or 4 spaces) and layout;
    every other key, its order, the compact one-line objects and the final newline stay as they
    were. A new entry goes first in its list (appending would rewrite the line before it to add a
    comma). Each edited file is parsed again and must equal the intended JSON before anything is
    written.
  - Every file is read and checked before the first one is written. A file that is not valid JSON
    stops the run, naming the file, with no file changed.
  - Files are replaced atomically (a temporary file in the same folder, then a rename) and keep
    their mode and owner.
  - Files of other domains or engines are left alone and reported in RV(skipped_files).
version_added: 0.1.0
author:
  - icds.citus_migration maintainers (@icds)
options:
  path:
    description:
      - Folder of the data source files (C(*.json)), for example the checkout's
        C(custom/icds_reports/ucr/data_sources). A single file is accepted too.
    type: path
    required: true
  recursive:
    description: Also process the files in sub-folders (hidden folders are skipped).
    type: bool
    default: false
  domains:
    description: Edit the data sources whose C(domains) include at least one of these.
    type: list
    elements: str
    required: true
  engine_id:
    description: Edit only the data sources whose own C(config.engine_id) is this one.
    type: str
    default: icds-ucr
  server_environment:
    description: The commcare-cloud environment the mirror is for, for example C(icds).
    type: str
    required: true
  mirror_engine_id:
    description:
      - The engine (a C(REPORTING_DATABASES) key) the data is mirrored to, for example
        C(icds-ucr-citus).
      - Must differ from the data source's own engine; the module fails naming the file otherwise.
    type: str
    required: true
  state:
    description:
      - V(present) adds the mirror engine.
      - V(absent) removes it; an entry left without engines is removed, and so is an emptied
        C(mirrored_engine_ids), so that V(absent) undoes V(present) exactly.
    type: str
    choices: [ present, absent ]
    default: present
  backup:
    description:
      - Keep a copy of each changed file next to it, named
        C(<file>.<pid>.<YYYY-MM-DD@HH:MM:SS>~) (not C(*.json), so CommCare does not load it).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Reads and plans every file, reports what would change, writes nothing.
  diff_mode:
    support: full
    description: One diff per changed file.
seealso:
  - module: icds.citus_migration.hq_toggle
'''

EXAMPLES = r'''
- name: Mirror every ICDS UCR data source to the Citus engine
  icds.citus_migration.ucr_mirror:
    path: "{{ code_root }}/custom/icds_reports/ucr/data_sources"
    recursive: true
    domains: [icds-cas]
    engine_id: icds-ucr
    server_environment: icds
    mirror_engine_id: icds-ucr-citus
    backup: true
  register: mirrors

- name: Show which files changed
  ansible.builtin.debug:
    var: mirrors.changed_files

- name: Take the mirror out again
  icds.citus_migration.ucr_mirror:
    path: "{{ code_root }}/custom/icds_reports/ucr/data_sources"
    recursive: true
    domains: [icds-cas]
    server_environment: icds
    mirror_engine_id: icds-ucr-citus
    state: absent
'''

RETURN = r'''
changed_files:
  description: Files that were changed (in check mode, would be changed).
  returned: always
  type: list
  elements: str
  sample: [ "/srv/hq/custom/icds_reports/ucr/data_sources/cbe_form.json" ]
unchanged_files:
  description: Matching files that already were as requested.
  returned: always
  type: list
  elements: str
  sample: [ "/srv/hq/custom/icds_reports/ucr/data_sources/child_health_cases.json" ]
skipped_files:
  description: Files that are not data sources of O(domains) with engine O(engine_id), left alone.
  returned: always
  type: list
  elements: str
  sample: [ "/srv/hq/custom/icds_reports/ucr/data_sources/other_domain_usage.json" ]
skip_reasons:
  description: Why each file in RV(skipped_files) was skipped, by path.
  returned: always
  type: dict
  sample: { "/srv/hq/custom/icds_reports/ucr/data_sources/other_domain_usage.json": "domains enikshay do not include icds-cas" }
backup_files:
  description: The backups made, by changed file (only with O(backup=true), not in check mode).
  returned: always
  type: dict
  sample: { "/srv/hq/ucr/data_sources/cbe_form.json": "/srv/hq/ucr/data_sources/cbe_form.json.4242.2025-01-31@10:00:00~" }
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.icds.citus_migration.plugins.module_utils.common.errors import MigrationError
from ansible_collections.icds.citus_migration.plugins.module_utils.commcare.ucr_datasource import (
    MirrorSpec,
    mirror_datasources,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', required=True),
            recursive=dict(type='bool', default=False),
            domains=dict(type='list', elements='str', required=True),
            engine_id=dict(type='str', default='icds-ucr'),
            server_environment=dict(type='str', required=True),
            mirror_engine_id=dict(type='str', required=True),
            state=dict(type='str', default='present', choices=['present', 'absent']),
            backup=dict(type='bool', default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        spec = MirrorSpec(server_environment=p['server_environment'],
                          mirror_engine_id=p['mirror_engine_id'],
                          domains=tuple(p['domains']), engine_id=p['engine_id'])
        outcome = mirror_datasources(p['path'], spec, state=p['state'], recursive=p['recursive'],
                                     check_mode=module.check_mode, backup=p['backup'])
    except MigrationError as exc:
        module.fail_json(msg=str(exc), changed=False)

    result = dict(
        changed=outcome.changed,
        changed_files=outcome.paths('changed'),
        unchanged_files=outcome.paths('unchanged'),
        skipped_files=outcome.paths('skipped'),
        skip_reasons=dict((f.path, f.reason) for f in outcome.files if f.status == 'skipped'),
        backup_files=dict((f.path, f.backup_file) for f in outcome.files if f.backup_file),
    )
    if module._diff:
        result['diff'] = [dict(before_header=f.path, after_header=f.path, before=f.before, after=f.after)
                          for f in outcome.files if f.status == 'changed']
    module.exit_json(**result)


if __name__ == '__main__':
    main()
