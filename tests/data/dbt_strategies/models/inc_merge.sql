-- merge is dbt-databricks' default strategy when a unique_key is set
{{ config(materialized='incremental', unique_key='id') }}
select id, batch, label, amount
from {{ ref('events') }}
where batch = {{ var('partition_key') }}
