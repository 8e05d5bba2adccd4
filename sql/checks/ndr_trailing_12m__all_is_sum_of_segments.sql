-- check: ndr_trailing_12m, rules "(month, segment) is unique" and "the 'all'
-- row equals the sum over segments" for base and current MRR and customers (METRICS.md §2).
with segments as (
    select month, sum(base_mrr) as base_mrr, sum(current_mrr) as current_mrr,
           sum(base_customers) as base_customers, sum(retained_customers) as retained_customers
    from ndr_trailing_12m
    where segment <> 'all'
    group by month
),

final as (
    select a.month, 'all is not the sum of segments' as problem
    from ndr_trailing_12m a
    left join segments s on a.month = s.month
    where a.segment = 'all'
      and (coalesce(s.base_mrr, 0) <> a.base_mrr
        or coalesce(s.current_mrr, 0) <> a.current_mrr
        or coalesce(s.base_customers, 0) <> a.base_customers
        or coalesce(s.retained_customers, 0) <> a.retained_customers)
    union all
    select month, 'duplicate (month, segment)' as problem
    from ndr_trailing_12m
    group by month, segment
    having count(*) > 1
)

select * from final
