{#-
  Daily revenue, built one Dagster partition (day) at a time.
  Parquet has no MERGE, so each run overwrites exactly the days it selects
  (insert_overwrite with dynamic partition overwrite): a new day appends, a re-run replaces.
  Local Spark: a cluster that registered this table from the warehouse dir may not know its
  partitions yet, so discover them first (no-op when known; Delta on Databricks needs none).
-#}
{{ config(
    materialized='incremental',
    incremental_strategy='insert_overwrite',
    partition_by=['revenue_date'],
    on_schema_change='fail',
    pre_hook="{% if target.type == 'spark' and is_incremental() %}alter table {{ this }} recover partitions{% endif %}"
) }}

select
    count(*) as order_count,
    sum(case when status = 'completed' then 1 else 0 end) as completed_order_count,
    count(distinct customer_id) as customer_count,
    cast(coalesce(sum(case when status = 'completed' then amount end), 0) as double) as revenue,
    order_date as revenue_date
from {{ ref('stg_orders') }}
{% if var('partition_key', '') %}
where order_date = cast('{{ var("partition_key") }}' as date)
{% endif %}
group by order_date
