-- amounts are stored in cents; the marts use currency units
select
    id as settlement_id,
    ticket_id,
    method,
    amount_cents / 100.0 as amount
from {{ ref('raw_settlements') }}
