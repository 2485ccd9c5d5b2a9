USE CATALOG {{catalog}};
USE IDENTIFIER({{schema}});

CREATE OR REPLACE TABLE orders_raw AS
SELECT * FROM VALUES ('alice', DATE'2026-01-01', 1), ('bob', DATE'2026-01-02', 2) AS t(customer_name, order_date, order_number)
