-- batch 1: ids 1, 2; batch 2 updates id 1 and adds id 3: three rows, one per id
{% set second = var('partition_key') | string == '2' %}
select count(*) as n
from {{ ref('inc_merge') }}
having count(*) != {{ 3 if second else 2 }}
    or count(distinct id) != count(*)
    or max(case when id = 1 then label end) != '{{ "first-revised" if second else "first" }}'
