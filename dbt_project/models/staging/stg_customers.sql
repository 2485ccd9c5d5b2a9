-- Bronze keeps every landed row; keep the latest signup per customer.
with ranked as (
    select
        cast(customer_id as string) as customer_id,
        trim(name) as customer_name,
        upper(trim(country)) as country,
        cast(signup_date as date) as signup_date,
        row_number() over (partition by cast(customer_id as string) order by cast(signup_date as date) desc) as rn
    from {{ source('bronze', 'customers') }}
    where customer_id is not null
)
select customer_id, customer_name, country, signup_date
from ranked
where rn = 1
