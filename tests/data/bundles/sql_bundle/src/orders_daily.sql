USE CATALOG {{catalog}};
USE IDENTIFIER({{schema}});

CREATE OR REPLACE TABLE orders_daily AS
SELECT order_date, count(*) AS number_of_orders FROM orders_raw GROUP BY order_date
