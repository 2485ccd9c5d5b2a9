-- every batch so far: each run rewrites the partitions it selects (appending would duplicate batch 1)
{{ config(materialized='incremental', incremental_strategy='insert_overwrite', partition_by=['batch']) }}
select id, label, amount, batch
from {{ ref('events') }}
where batch <= {{ var('partition_key') }}
