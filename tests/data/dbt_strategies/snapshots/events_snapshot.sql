{% snapshot events_snapshot %}
{{ config(unique_key='id', strategy='check', check_cols=['label', 'amount']) }}
-- each id's latest version among the batches so far (a subquery: Spark 3.5 has no QUALIFY)
select id, label, amount
from (
    select id, label, amount, row_number() over (partition by id order by batch desc) as version_rank
    from {{ ref('events') }}
    where batch <= {{ var('partition_key') }}
) versions
where version_rank = 1
{% endsnapshot %}
