-- Revenue only counts completed orders, so a negative day means bad amounts upstream.
select revenue_date, revenue
from {{ ref('fct_daily_revenue') }}
where revenue < 0
