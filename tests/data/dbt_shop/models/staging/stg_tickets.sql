select
    id as ticket_id,
    patron_id,
    cast(ordered_on as date) as ordered_on,
    state
from {{ ref('raw_tickets') }}
