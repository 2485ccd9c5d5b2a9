with visits as (
    select
        patron_id,
        min(ordered_on) as first_visit,
        max(ordered_on) as latest_visit,
        count(*) as visit_count
    from {{ ref('stg_tickets') }}
    group by patron_id
),

spend as (
    select t.patron_id, sum(s.amount) as lifetime_spend
    from {{ ref('stg_settlements') }} s
    join {{ ref('stg_tickets') }} t on t.ticket_id = s.ticket_id
    group by t.patron_id
)

select
    p.patron_id,
    p.given_name,
    p.family_name,
    v.first_visit,
    v.latest_visit,
    coalesce(v.visit_count, 0) as visit_count,
    coalesce(sp.lifetime_spend, 0) as lifetime_spend
from {{ ref('stg_patrons') }} p
left join visits v on v.patron_id = p.patron_id
left join spend sp on sp.patron_id = p.patron_id
