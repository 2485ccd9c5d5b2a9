{% snapshot events_snapshot %}
{{ config(unique_key='id', strategy='check', check_cols=['label', 'amount']) }}
select id, label, amount
from {{ ref('events') }}
where batch <= {{ var('partition_key') }}
qualify row_number() over (partition by id order by batch desc) = 1
{% endsnapshot %}
