{% set methods = ['card', 'cash', 'voucher'] %}

with settlements as (
    select
        ticket_id,
        {% for method in methods -%}
        sum(case when method = '{{ method }}' then amount else 0 end) as {{ method }}_amount,
        {% endfor -%}
        sum(amount) as total_amount
    from {{ ref('stg_settlements') }}
    group by ticket_id
)

select
    t.ticket_id,
    t.patron_id,
    t.ordered_on,
    t.state,
    {% for method in methods -%}
    coalesce(s.{{ method }}_amount, 0) as {{ method }}_amount,
    {% endfor -%}
    coalesce(s.total_amount, 0) as amount
from {{ ref('stg_tickets') }} t
left join settlements s on s.ticket_id = t.ticket_id
