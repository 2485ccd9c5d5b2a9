-- The web orders again, as a streaming table over a Delta table (another model) rather than files.
{{ config(materialized = 'streaming_table') }}

select order_number, order_date
from stream {{ ref('web_orders') }}
