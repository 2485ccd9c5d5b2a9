-- The landed web orders: each refresh ingests the batches landed since the last one.
{{ config(materialized = 'streaming_table') }}

select
  order_number,
  customer_name,
  date(timestamp(from_unixtime(try_cast(order_datetime as bigint)))) as order_date
from stream read_files(
  "dbfs:/tmp/dbt_bundle/{{ var('dev_schema') }}/web_orders/",
  format => "json"
)
