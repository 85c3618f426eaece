# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
name: postgres_connection
short_description: Connection options for a database of commcare-cloud's postgresql.yml
version_added: 0.1.0
author: icds.citus_migration maintainers (@icds)
description:
  - Finds the entry of C(dbs.custom) whose C(django_alias) is O(alias) and returns the
    connection options the modules of this collection take (C(login_host), C(login_port),
    C(login_db), C(login_user), C(login_password), C(ssl_mode)).
  - The entry's C(host) is an inventory host or group name, resolved to the first host's
    C(ansible_host) (or its name).
options:
  _input:
    description: The C(dbs.custom) list.
    type: list
    elements: dict
    required: true
  alias:
    description: The Django alias of the database, for example C(icds-ucr-citus).
    type: str
    required: true
  hostvars:
    description: The C(hostvars) magic variable.
    type: dict
    required: true
  groups:
    description: The C(groups) magic variable.
    type: dict
    required: true
  user:
    description: Role to connect as.
    type: str
  password:
    description: Password of the role (omitted from the result when empty).
    type: str
  default_port:
    description: Port when the entry and the host set none.
    type: int
    default: 5432
  ssl_mode:
    description: libpq sslmode.
    type: str
    default: prefer
'''

EXAMPLES = r'''
- name: Build the target connection from postgresql.yml
  ansible.builtin.set_fact:
    target_conn: "{{ dbs.custom | icds.citus_migration.postgres_connection('icds-ucr-citus', hostvars, groups, user='commcarehq') }}"
'''

RETURN = r'''
_value:
  description: Connection options (C(login_host), C(login_port), C(login_db), C(login_user), C(login_password), C(ssl_mode)).
  type: dict
'''

from ansible.errors import AnsibleFilterError


def postgres_connection(custom, alias, hostvars, groups, user=None, password=None,
                        default_port=5432, ssl_mode='prefer'):
    entries = [e for e in (custom or []) if e.get('django_alias') == alias]
    if not entries:
        known = ', '.join(sorted(str(e.get('django_alias')) for e in (custom or [])))
        raise AnsibleFilterError("postgresql.yml dbs.custom has no entry with django_alias '%s' "
                                 "(known: %s)" % (alias, known or 'none'))
    entry = entries[0]
    host_ref = entry.get('host')
    if not host_ref:
        raise AnsibleFilterError("dbs.custom entry '%s' has no host" % alias)
    host_name = host_ref
    if host_ref in groups and groups[host_ref]:
        host_name = groups[host_ref][0]
    hvars = hostvars.get(host_name, {}) if hasattr(hostvars, 'get') else {}
    address = hvars.get('ansible_host', host_name)
    port = entry.get('port') or hvars.get('postgresql_port') or default_port
    out = dict(login_host=str(address), login_port=int(port), login_db=entry.get('name'),
               ssl_mode=entry.get('ssl_mode', ssl_mode))
    if user:
        out['login_user'] = user
    if password:
        out['login_password'] = password
    return out


def postgres_sources(custom, aliases, hostvars, groups, user=None, password=None,
                     default_port=5432, ssl_mode='prefer'):
    """[{'alias': alias, 'conn': postgres_connection(...)}] for each alias, in order."""
    return [dict(alias=alias, conn=postgres_connection(custom, alias, hostvars, groups, user,
                                                       password, default_port, ssl_mode))
            for alias in aliases or []]


def citus_workers(hosts, hostvars, dbname, default_port=5432):
    """[{'host', 'login_host', 'login_port', 'login_db'}] for the inventory's worker hosts."""
    out = []
    for host in hosts or []:
        hvars = hostvars.get(host, {}) if hasattr(hostvars, 'get') else {}
        out.append(dict(host=host, login_host=str(hvars.get('ansible_host', host)),
                        login_port=int(hvars.get('postgresql_port') or default_port),
                        login_db=dbname))
    return out


class FilterModule(object):
    def filters(self):
        return {'postgres_connection': postgres_connection,
                'postgres_sources': postgres_sources,
                'citus_workers': citus_workers}
