select 'alice' as customer_name, date'2026-01-01' as order_date, 1 as order_number
union all
select 'bob', date'2026-01-02', 2
