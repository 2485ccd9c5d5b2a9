-- every batch so far, replacing the rows the predicate matches (all of them)
{{ config(
    materialized='incremental',
    incremental_strategy='replace_where',
    incremental_predicates=['batch >= 1']
) }}
select id, batch, label, amount
from {{ ref('events') }}
where batch <= {{ var('partition_key') }}
