# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The table plan options (O(plan), O(ucr_folder), O(schema)) of the modules that read the
table plan: citus_bootstrap, citus_child_tables and migration_manifest. Their argument spec
is module_utils/common/pg_argspec.py table_plan_argument_spec()."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r'''
options:
  plan:
    description:
      - Path of the YAML table plan. Defaults to the ICDS plan shipped with the collection
        (C(plans/icds.yml)).
    type: path
  ucr_folder:
    description:
      - Folder of UCR data source JSON files. When given, each ICDS UCR table is classified by,
        and takes its distribution and primary key from, its data source (C(config.sql_settings)).
    type: path
  schema:
    description: Schema of the tables, on the source and (for a module with a target) on the target.
    type: str
    default: public
'''
