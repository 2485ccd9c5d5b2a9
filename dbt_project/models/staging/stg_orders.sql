-- One row per order, typed and normalised; keys are strings so joins never depend on CSV inference.
select
    cast(order_id as string) as order_id,
    cast(customer_id as string) as customer_id,
    cast(order_date as date) as order_date,
    cast(order_ts as timestamp) as order_ts,
    cast(amount as double) as amount,
    lower(trim(status)) as status
from {{ source('silver', 'orders_enriched') }}
