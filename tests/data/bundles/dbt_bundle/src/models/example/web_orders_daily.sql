-- Web orders per day, recomputed on every refresh.
{{ config(materialized = 'materialized_view') }}

select order_date, count(*) as number_of_orders
from {{ ref('web_orders') }}
group by order_date
