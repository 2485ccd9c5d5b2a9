select count(*) as n
from {{ ref('inc_replace_where') }}
having count(*) != {{ 4 if var('partition_key') | string == '2' else 2 }}
