-- Sales orders ingested as a streaming table; each run reads only the files it has not read yet.
USE CATALOG {{catalog}};
CREATE SCHEMA IF NOT EXISTS IDENTIFIER({{schema}});
USE IDENTIFIER({{schema}});

CREATE OR REFRESH STREAMING TABLE orders_raw
AS SELECT
  customer_name,
  DATE(TIMESTAMP(FROM_UNIXTIME(TRY_CAST(order_datetime AS BIGINT)))) AS order_date,
  order_number
FROM STREAM READ_FILES(
  "/databricks-datasets/retail-org/sales_orders/",
  format => "json",
  header => true
)
