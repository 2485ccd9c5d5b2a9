-- Sales orders from Databricks' sample data, ingested as a streaming table.
{{ config(materialized = 'streaming_table') }}

select
  customer_name,
  date(timestamp(from_unixtime(try_cast(order_datetime as bigint)))) as order_date,
  order_number
from stream read_files(
  "/databricks-datasets/retail-org/sales_orders/",
  format => "json",
  header => true
)
