{{ config(materialized='incremental', incremental_strategy='append') }}
select id, batch, label, amount
from {{ ref('events') }}
where batch = {{ var('partition_key') }}
