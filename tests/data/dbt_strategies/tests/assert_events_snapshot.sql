-- batch 2 changes id 1 (its old version is closed) and adds id 3
{% set second = var('partition_key') | string == '2' %}
select count(*) as n
from {{ ref('events_snapshot') }}
having count(*) != {{ 4 if second else 2 }}
    or sum(case when dbt_valid_to is null then 1 else 0 end) != {{ 3 if second else 2 }}
