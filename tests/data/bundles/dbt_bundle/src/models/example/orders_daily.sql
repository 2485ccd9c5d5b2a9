-- Orders per day in August 2019, as a materialized view.
{{ config(materialized = 'materialized_view') }}

select order_date, count(*) as number_of_orders
from {{ ref('orders_raw') }}
{% if target.name != 'prod' %}
where order_date >= '2019-08-01' and order_date < '2019-09-01'
{% endif %}
group by order_date
