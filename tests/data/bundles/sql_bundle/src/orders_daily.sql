-- Orders per day, recomputed from orders_raw; outside prod only August 2019.
USE CATALOG {{catalog}};
USE IDENTIFIER({{schema}});

CREATE OR REPLACE MATERIALIZED VIEW orders_daily
AS SELECT order_date, count(*) AS number_of_orders
FROM orders_raw
WHERE if({{bundle_target}} = "prod", true, order_date >= '2019-08-01' AND order_date < '2019-09-01')
GROUP BY order_date
