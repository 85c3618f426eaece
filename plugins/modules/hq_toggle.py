#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: icds.citus_migration contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: hq_toggle
short_description: Read, assert, enable or disable a CommCare HQ feature toggle in CouchDB
description:
  - Reads or changes one CommCare HQ feature toggle, stored in CouchDB as the document
    C(hqFeatureToggle-<slug>) with the fields C(slug), C(enabled_users) (namespaced items such
    as C(domain:icds-cas)) and C(last_modified).
  - A random-sampling toggle (for example C(icds_compare_queries_against_citus)) keeps its rate,
    between 0 and 1, in the field C(hq_dynamic_randomness) of the same document.
  - For the ICDS Citus migration, the pre-flight asserts that C(enable_ucr_mirrors) and
    C(parallel_agg) are off for C(domain:icds-cas) (O(state=query) with O(fail_if_enabled=true));
    the post-flight enables them and sets the sampling rate of
    C(icds_compare_queries_against_citus).
  - Writes carry the document's current C(_rev). When another writer changed the document in the
    meantime (HTTP 409) the module reads it again and re-applies its change, up to
    O(conflict_retries) times; other fields of the document are never touched.
  - A missing toggle document is created by O(state=enabled); O(state=disabled) and
    O(state=query) treat it as a toggle that is off and create nothing.
  - CommCare caches toggle lookups, so a change may take a little while to be seen by every
    process.
version_added: 0.1.0
author:
  - icds.citus_migration maintainers (@icds)
options:
  couch_url:
    description:
      - URL of the CouchDB database that holds the toggles, for example
        C(https://couch.example.org:5984/commcarehq).
      - Must not contain credentials; use O(couch_user) and O(couch_password).
    type: str
    required: true
  couch_user:
    description: CouchDB user, sent with HTTP basic authentication. Omit for an open server.
    type: str
  couch_password:
    description: Password of O(couch_user). Never logged nor returned.
    type: str
  validate_certs:
    description:
      - Verify the server's TLS certificate and host name (https only).
      - Set to V(false) only for a test server with a self-signed certificate.
    type: bool
    default: true
  ca_path:
    description: PEM file of the CA certificates to trust instead of the system ones (https only).
    type: path
  timeout:
    description: Seconds to wait for each CouchDB answer.
    type: int
    default: 30
  slug:
    description: The toggle's slug, for example C(enable_ucr_mirrors), C(parallel_agg).
    type: str
    required: true
  item:
    description:
      - The item the toggle is enabled for, as CommCare stores it in C(enabled_users), that is
        C(domain:<name>) for a project space (C(domain:icds-cas)), a plain username for a user.
      - With O(state=query), the returned RV(enabled) tells whether the toggle is on for this
        item; without it, whether it is on for anyone.
    type: str
  state:
    description:
      - V(enabled) adds O(item) to C(enabled_users) (creating the document if needed) and/or sets
        the sampling rate to O(randomness). Needs O(item) or O(randomness).
      - V(disabled) removes O(item) from C(enabled_users); with O(randomness=0) it also stops random
        sampling. Needs O(item) or O(randomness).
      - V(query) only reads. This is the default, so a task without O(state) never writes.
    type: str
    choices: [ enabled, disabled, query ]
    default: query
  randomness:
    description:
      - Sampling rate of a random toggle, from 0 to 1, stored as C(hq_dynamic_randomness).
      - With O(state=disabled) only V(0) is allowed. Not allowed with O(state=query).
    type: float
  fail_if_enabled:
    description:
      - With O(state=query), fail with a message naming the toggle when it is on for O(item)
        (listed, or sampled at a rate above 0). This is the pre-flight check.
    type: bool
    default: false
  conflict_retries:
    description: How many times to re-read and re-apply after an HTTP 409 before failing.
    type: int
    default: 5
attributes:
  check_mode:
    support: full
    description: Reads the toggle and reports what would change; writes nothing.
  diff_mode:
    support: full
    description: Shows C(enabled_users) and the sampling rate before and after.
notes:
  - Uses only the Python standard library on the managed host.
seealso:
  - module: icds.citus_migration.ucr_mirror
'''

EXAMPLES = r'''
- name: Pre-flight - writes must not go to the half-built Citus database yet
  icds.citus_migration.hq_toggle:
    couch_url: "{{ couch_url }}"
    couch_user: "{{ couch_user }}"
    couch_password: "{{ couch_password }}"
    slug: "{{ slug_name }}"
    item: domain:icds-cas
    state: query
    fail_if_enabled: true
  loop: [enable_ucr_mirrors, parallel_agg]
  loop_control:
    loop_var: slug_name

- name: Post-flight - enable the mirrors and parallel aggregation for icds-cas
  icds.citus_migration.hq_toggle:
    couch_url: "{{ couch_url }}"
    couch_user: "{{ couch_user }}"
    couch_password: "{{ couch_password }}"
    slug: "{{ slug_name }}"
    item: domain:icds-cas
    state: enabled
  loop: [enable_ucr_mirrors, parallel_agg]
  loop_control:
    loop_var: slug_name

- name: Post-flight - compare 10 % of the ICDS queries against Citus
  icds.citus_migration.hq_toggle:
    couch_url: "{{ couch_url }}"
    couch_user: "{{ couch_user }}"
    couch_password: "{{ couch_password }}"
    slug: icds_compare_queries_against_citus
    randomness: 0.1
    state: enabled

- name: Read a toggle and use the answer
  icds.citus_migration.hq_toggle:
    couch_url: https://couch.example.org:5984/commcarehq
    ca_path: /etc/ssl/certs/internal-ca.pem
    slug: parallel_agg
    item: domain:icds-cas
  register: parallel_agg

- name: Roll back - disable parallel aggregation for icds-cas
  icds.citus_migration.hq_toggle:
    couch_url: "{{ couch_url }}"
    couch_user: "{{ couch_user }}"
    couch_password: "{{ couch_password }}"
    slug: parallel_agg
    item: domain:icds-cas
    state: disabled
'''

RETURN = r'''
doc_id:
  description: ID of the toggle document.
  returned: always
  type: str
  sample: hqFeatureToggle-parallel_agg
exists:
  description: Whether the toggle document exists (after the change; in check mode, would exist).
  returned: always
  type: bool
  sample: true
enabled:
  description:
    - Whether the toggle is on for O(item) (listed in C(enabled_users), or sampled at a rate
      above 0), after the change. Without O(item), whether it is on for anyone.
  returned: always
  type: bool
  sample: false
enabled_users:
  description: The toggle's C(enabled_users) after the change.
  returned: always
  type: list
  elements: str
  sample: [ "domain:icds-cas" ]
randomness:
  description: The sampling rate C(hq_dynamic_randomness) after the change; null when the document has none.
  returned: always
  type: float
  sample: 0.1
attempts:
  description: Read-plan-write rounds needed (more than 1 after HTTP 409 conflicts).
  returned: always
  type: int
  sample: 1
'''

import json

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.icds.citus_migration.plugins.module_utils.common.errors import MigrationError
from ansible_collections.icds.citus_migration.plugins.module_utils.commcare.couch_toggles import (
    CouchClient,
    CouchConnection,
    ToggleOptionError,
    assert_disabled,
    ensure_toggle,
    make_change,
    toggle_doc_id,
)


def _diff_text(summary):
    return json.dumps(summary, indent=2, sort_keys=True) + '\n'


def main():
    module = AnsibleModule(
        argument_spec=dict(
            couch_url=dict(type='str', required=True),
            couch_user=dict(type='str'),
            couch_password=dict(type='str', no_log=True),
            validate_certs=dict(type='bool', default=True),
            ca_path=dict(type='path'),
            timeout=dict(type='int', default=30),
            slug=dict(type='str', required=True),
            item=dict(type='str'),
            state=dict(type='str', default='query', choices=['enabled', 'disabled', 'query']),
            randomness=dict(type='float'),
            fail_if_enabled=dict(type='bool', default=False),
            conflict_retries=dict(type='int', default=5),
        ),
        supports_check_mode=True,
    )
    p = module.params
    slug = p['slug']
    result = dict(changed=False, doc_id=toggle_doc_id(slug))
    try:
        if p['fail_if_enabled'] and p['state'] != 'query':
            raise ToggleOptionError('fail_if_enabled only goes with state=query')
        change = make_change(p['state'], p['item'], p['randomness'])
        client = CouchClient(CouchConnection(
            url=p['couch_url'], user=p['couch_user'], password=p['couch_password'],
            validate_certs=p['validate_certs'], ca_path=p['ca_path'], timeout=p['timeout']))
        outcome = ensure_toggle(client, slug, change, check_mode=module.check_mode,
                                conflict_retries=max(0, p['conflict_retries']))
    except MigrationError as exc:
        module.fail_json(msg=str(exc), **result)

    after = outcome.after
    result.update(
        changed=outcome.changed,
        exists=after.exists,
        enabled=after.enabled_for(change.item),
        enabled_users=list(after.enabled_users),
        randomness=after.randomness,
        attempts=outcome.attempts,
    )
    if module._diff:
        result['diff'] = dict(before_header=result['doc_id'], after_header=result['doc_id'],
                              before=_diff_text(outcome.before.summary()),
                              after=_diff_text(after.summary()))
    if p['fail_if_enabled']:
        try:
            assert_disabled(after, change.item)
        except MigrationError as exc:
            module.fail_json(msg=str(exc), **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
