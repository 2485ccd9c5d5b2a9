select
    id as patron_id,
    given_name,
    family_name
from {{ ref('raw_patrons') }}
