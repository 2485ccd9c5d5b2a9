select count(*) as n
from {{ ref('inc_insert_overwrite') }}
having count(*) != {{ 4 if var('partition_key') | string == '2' else 2 }}
    or sum(case when batch = 1 then 1 else 0 end) != 2
