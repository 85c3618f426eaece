# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shipped ICDS table plan, embedded so that it travels inside every module's payload.

``plans/icds.yml`` at the collection root is the same text for operators to read and copy
(a unit test keeps the two identical).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

ICDS_PLAN_NAME = 'icds.citus_migration:plans/icds.yml'

ICDS_PLAN_YAML = r'''# The ICDS table plan: how each family of tables of the ICDS reporting database moves to Citus.
#
# Read by icds.citus_migration (table_plan.py). Every rule describes a FAMILY: it matches a
# top-level table (one without a parent) by exact `name`, by `pattern` (a Python regular
# expression that must match the WHOLE name) or as a UCR table (`ucr: {domain: ...}`);
# the table's inheritance children / partitions follow it.
#
#   kind: keep_child  children are copied into same-named children on the target. Citus refuses
#                     inheritance on distributed tables, so these families stay LOCAL on the
#                     coordinator (SPEC 4).
#   kind: drop_child  children are copied into the PARENT on the target, which Citus
#                     distributes (rows spread over shards).
#   kind: plain       same name on the target, no children expected.
#   kind: ignore      not copied (reported as ignored).
#   distribution:     local (default) | reference | {hash: <column>} |
#                     from_data_source (ucr rules: read from the UCR data source JSON when a
#                     data source folder is given, else `default_distribution`)
#   primary_key:      the primary key the target needs; Citus requires it to include the
#                     distribution column (ICDS: supervisor_id, doc_id).
#
# A table matched by no rule is "unclassified": manifest generation fails listing it (or warns).
# Two rules matching the same table is an error naming both.
version: 1
description: ICDS reporting database (icds-ucr) to the Citus cluster icds-ucr-citus
families:
  # --- keep-child: aggregate tables, one child per month (and aggregation level) -----------
  - {name: agg_awc, kind: keep_child}
  - {name: agg_child_health, kind: keep_child}
  - {name: agg_ccs_record, kind: keep_child}
  - {name: agg_ls, kind: keep_child}
  - {name: agg_awc_daily, kind: keep_child}
  # LS (lady supervisor) form tables (custom/icds_reports/const.py AGG_LS_*_TABLE)
  - {name: icds_dashboard_ls_awc_visits_forms, kind: keep_child}
  - {name: icds_dashboard_ls_vhnd_forms, kind: keep_child}
  - {name: icds_dashboard_ls_beneficiary_forms, kind: keep_child}
  # AWW incentive report (AWW_INCENTIVE_TABLE) and the audit log
  - {name: icds_dashboard_aww_incentive, kind: keep_child}
  - {name: icds_audit_entry_record, kind: keep_child}
  # Infrastructure forms (AGG_INFRASTRUCTURE_TABLE)
  - {name: icds_dashboard_infrastructure_forms, kind: keep_child}

  # --- drop-child: the ten form tables ICDS distributed on supervisor_id -------------------
  # Their children are per state and month (names carry no date: the date comes from the
  # child's CHECK constraint).
  - name: icds_dashboard_comp_feed_form
    kind: drop_child
    distribution: {hash: supervisor_id}
    primary_key: [supervisor_id, doc_id]
  - name: icds_dashboard_ccs_record_cf_forms
    kind: drop_child
    distribution: {hash: supervisor_id}
    primary_key: [supervisor_id, doc_id]
  - name: icds_dashboard_ccs_record_postnatal_forms
    kind: drop_child
    distribution: {hash: supervisor_id}
    primary_key: [supervisor_id, doc_id]
  - name: icds_dashboard_child_health_postnatal_forms
    kind: drop_child
    distribution: {hash: supervisor_id}
    primary_key: [supervisor_id, doc_id]
  - name: icds_dashboard_child_health_thr_forms
    kind: drop_child
    distribution: {hash: supervisor_id}
    primary_key: [supervisor_id, doc_id]
  - name: icds_dashboard_ccs_record_thr_forms
    kind: drop_child
    distribution: {hash: supervisor_id}
    primary_key: [supervisor_id, doc_id]
  - name: icds_dashboard_ccs_record_bp_forms
    kind: drop_child
    distribution: {hash: supervisor_id}
    primary_key: [supervisor_id, doc_id]
  - name: icds_dashboard_ccs_record_delivery_forms
    kind: drop_child
    distribution: {hash: supervisor_id}
    primary_key: [supervisor_id, doc_id]
  - name: icds_dashboard_daily_feeding_forms
    kind: drop_child
    distribution: {hash: supervisor_id}
    primary_key: [supervisor_id, doc_id]
  - name: icds_dashboard_growth_monitoring_forms
    kind: drop_child
    distribution: {hash: supervisor_id}
    primary_key: [supervisor_id, doc_id]

  # --- drop-child: monthly case tables, one child per month --------------------------------
  - name: daily_attendance
    kind: drop_child
    distribution: {hash: supervisor_id}
    primary_key: [supervisor_id, doc_id]
  - name: child_health_monthly
    kind: drop_child
    distribution: {hash: supervisor_id}
    primary_key: [supervisor_id, case_id, month]
  - name: ccs_record_monthly
    kind: drop_child
    distribution: {hash: supervisor_id}
    primary_key: [supervisor_id, case_id, month]

  # --- drop-child: every ICDS UCR table ----------------------------------------------------
  # ucr_icds-cas_<table_id>_<hash> and legacy config_report_icds-cas_... . With a UCR data
  # source folder the distribution and primary key come from config.sql_settings (no
  # citus_config = local); without one, hash on supervisor_id.
  - ucr: {domain: icds-cas}
    kind: drop_child
    distribution: from_data_source
    default_distribution: {hash: supervisor_id}

  # --- plain tables -------------------------------------------------------------------------
  - {name: awc_location, kind: plain, distribution: reference}
  - {name: icds_months, kind: plain, distribution: reference}
  - {name: awc_location_local, kind: plain}
  - {name: icds_months_local, kind: plain}

  # --- ignored --------------------------------------------------------------------------------
  - {name: django_migrations, kind: ignore}
  - {name: ucr_table_name_mapping, kind: ignore}
  # the aggregation profiling table (AggregationSQLProfile)
  - {name: icds_dashboard_aggregation_sql_profile, kind: ignore}
  # UCR tables of every other domain
  - ucr: {domain: '*'}
    kind: ignore
'''
