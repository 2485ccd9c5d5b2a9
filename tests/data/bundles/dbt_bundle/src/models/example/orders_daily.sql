select order_date, count(*) as number_of_orders
from {{ ref('orders_raw') }}
group by order_date
