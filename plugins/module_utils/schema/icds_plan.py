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
#                     distribution column. It must contain every column of the source's
#                     own primary key (bootstrap refuses a key that would lose one).
#
# Checked against commcare-hq's own schema of the migration era (late 2019):
# tests/fixtures/icds_real/ (README.md there lists the commcare-hq file of every fact).
#
# A table matched by no rule is "unclassified": manifest generation fails listing it (or warns).
# Two rules matching the same table is an error naming both.
version: 1
description: ICDS reporting database (icds-ucr) to the Citus cluster icds-ucr-citus
families:
  # --- keep-child: aggregate tables, one child per month (and aggregation level) -----------
  # children <table>_<YYYY-MM-DD>_<level> / agg_awc_daily_<YYYY-MM-DD>
  # (management/commands/create_citus_child_tables.py keep_child_tables)
  - {name: agg_awc, kind: keep_child}
  - {name: agg_child_health, kind: keep_child}
  - {name: agg_ccs_record, kind: keep_child}
  - {name: agg_ls, kind: keep_child}
  - {name: agg_awc_daily, kind: keep_child}
  # LS (lady supervisor) form tables (custom/icds_reports/const.py AGG_LS_*_TABLE); children
  # per state and month (icds_db_ls_*_form_<md5>, date only in the CHECK)
  - {name: icds_dashboard_ls_awc_visits_forms, kind: keep_child}
  - {name: icds_dashboard_ls_vhnd_forms, kind: keep_child}
  - {name: icds_dashboard_ls_beneficiary_forms, kind: keep_child}
  # THR v2 (const.py AGG_THR_V2_TABLE, migration 0125): added after the migration commands
  # were written, which do not list it; children per state and month like its LS siblings,
  # written by the same kind of helper, so kept the same way.
  - {name: icds_dashboard_thr_v2, kind: keep_child}
  # AWW incentive report (AWW_INCENTIVE_TABLE) and the audit log (architect partitions
  # icds_audit_entry_record_y<YYYY>m<MM>, date only in the CHECK)
  - {name: icds_dashboard_aww_incentive, kind: keep_child}
  - {name: icds_audit_entry_record, kind: keep_child}
  # Infrastructure forms (AGG_INFRASTRUCTURE_TABLE). On Citus ICDS gave it the composite key
  # of its model's unique_together (migration 0107); the source key is (awc_id).
  - name: icds_dashboard_infrastructure_forms
    kind: keep_child
    primary_key: [supervisor_id, awc_id, month]

  # --- drop-child: the ten form tables ICDS distributed on supervisor_id -------------------
  # const.py DISTRIBUTED_TABLES. They have no doc_id: the key on Citus is the models'
  # unique_together (supervisor_id, case_id, month) (migration 0107_citus_composite_key; the
  # PostgreSQL source keeps the Django primary key (case_id)). Children are per state and
  # month (icds_db_*_form_<md5>): no date in the name, the date comes from the CHECK.
  - name: icds_dashboard_comp_feed_form
    kind: drop_child
    distribution: {hash: supervisor_id}
    primary_key: [supervisor_id, case_id, month]
  - name: icds_dashboard_ccs_record_cf_forms
    kind: drop_child
    distribution: {hash: supervisor_id}
    primary_key: [supervisor_id, case_id, month]
  - name: icds_dashboard_ccs_record_postnatal_forms
    kind: drop_child
    distribution: {hash: supervisor_id}
    primary_key: [supervisor_id, case_id, month]
  - name: icds_dashboard_child_health_postnatal_forms
    kind: drop_child
    distribution: {hash: supervisor_id}
    primary_key: [supervisor_id, case_id, month]
  - name: icds_dashboard_child_health_thr_forms
    kind: drop_child
    distribution: {hash: supervisor_id}
    primary_key: [supervisor_id, case_id, month]
  - name: icds_dashboard_ccs_record_thr_forms
    kind: drop_child
    distribution: {hash: supervisor_id}
    primary_key: [supervisor_id, case_id, month]
  - name: icds_dashboard_ccs_record_bp_forms
    kind: drop_child
    distribution: {hash: supervisor_id}
    primary_key: [supervisor_id, case_id, month]
  - name: icds_dashboard_ccs_record_delivery_forms
    kind: drop_child
    distribution: {hash: supervisor_id}
    primary_key: [supervisor_id, case_id, month]
  - name: icds_dashboard_daily_feeding_forms
    kind: drop_child
    distribution: {hash: supervisor_id}
    primary_key: [supervisor_id, case_id, month]
  - name: icds_dashboard_growth_monitoring_forms
    kind: drop_child
    distribution: {hash: supervisor_id}
    primary_key: [supervisor_id, case_id, month]

  # --- drop-child: monthly case tables, one child per month (<table>_<YYYY-MM-DD>) ----------
  # Keys on Citus: the models' unique_together (migrations 0107 and 0118_monthly_pk). The
  # source has (doc_id) for daily_attendance and no key for the two monthly tables.
  - name: daily_attendance
    kind: drop_child
    distribution: {hash: supervisor_id}
    primary_key: [supervisor_id, doc_id, month]
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
  # create_citus_child_tables.py plain_tables; const.py REFERENCE_TABLES
  - {name: awc_location, kind: plain, distribution: reference}
  - {name: icds_months, kind: plain, distribution: reference}
  - {name: awc_location_local, kind: plain}
  - {name: icds_months_local, kind: plain}
  # Django models without db_table: Django names them icds_reports_<model>
  # (AggregateInactiveAWW, IcdsFile: plain_tables of create_citus_child_tables.py)
  - {name: icds_reports_aggregateinactiveaww, kind: plain}
  - {name: icds_reports_icdsfile, kind: plain}
  # added by later migrations of the era (0129 AggregationRecord, 0143 UcrReconciliationStatus);
  # the old commands listed them nowhere ("not seen", never copied)
  - {name: icds_reports_aggregationrecord, kind: plain}
  - {name: icds_reports_ucrreconciliationstatus, kind: plain}

  # --- ignored (generate_migration_tables.py IGNORE_TABLES) ---------------------------------
  - {name: django_migrations, kind: ignore}
  - {name: ucr_table_name_mapping, kind: ignore}
  # the aggregation profiling table: model AggregateSQLProfile has no db_table
  - {name: icds_reports_aggregatesqlprofile, kind: ignore}
  # UCR tables of every other domain
  - ucr: {domain: '*'}
    kind: ignore
'''
