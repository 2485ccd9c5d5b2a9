-- Lifetime revenue per customer, for the account team.
select
    c.customer_id,
    c.customer_name,
    c.country,
    count(o.order_id) as order_count,
    cast(coalesce(sum(case when o.status = 'completed' then o.amount end), 0) as double) as lifetime_revenue
from {{ ref('dim_customers') }} c
left join {{ ref('stg_orders') }} o on o.customer_id = c.customer_id
group by c.customer_id, c.customer_name, c.country
