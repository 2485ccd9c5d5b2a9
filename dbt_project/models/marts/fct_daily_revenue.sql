{#-
  Daily revenue, built one Dagster partition (day) at a time: an incremental model merged by
  its unique key (dbt-databricks' default strategy with a unique_key), so a new day is
  inserted and a re-run of a day updates that day's row in place.
-#}
{{ config(
    materialized='incremental',
    unique_key='revenue_date',
    on_schema_change='fail'
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
