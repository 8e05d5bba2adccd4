-- check: mrr_bridge_monthly, rule "the 'all' row equals the sum over segments"
-- for every additive column (METRICS.md §1, §10.5).
with segments as (
    select
        month,
        sum(start_mrr) as start_mrr,
        sum(new_mrr) as new_mrr,
        sum(reactivation_mrr) as reactivation_mrr,
        sum(expansion_mrr) as expansion_mrr,
        sum(contraction_mrr) as contraction_mrr,
        sum(churned_mrr) as churned_mrr,
        sum(end_mrr) as end_mrr,
        sum(start_customers) as start_customers,
        sum(new_customers) as new_customers,
        sum(reactivated_customers) as reactivated_customers,
        sum(churned_customers) as churned_customers,
        sum(end_customers) as end_customers
    from mrr_bridge_monthly
    where segment <> 'all'
    group by month
),

all_rows as (
    select * from mrr_bridge_monthly where segment = 'all'
),

final as (
    select a.month, a.start_mrr, s.start_mrr as segments_start_mrr, a.end_mrr, s.end_mrr as segments_end_mrr
    from all_rows a
    left join segments s on a.month = s.month
    where coalesce(s.start_mrr, 0) <> a.start_mrr
       or coalesce(s.new_mrr, 0) <> a.new_mrr
       or coalesce(s.reactivation_mrr, 0) <> a.reactivation_mrr
       or coalesce(s.expansion_mrr, 0) <> a.expansion_mrr
       or coalesce(s.contraction_mrr, 0) <> a.contraction_mrr
       or coalesce(s.churned_mrr, 0) <> a.churned_mrr
       or coalesce(s.end_mrr, 0) <> a.end_mrr
       or coalesce(s.start_customers, 0) <> a.start_customers
       or coalesce(s.new_customers, 0) <> a.new_customers
       or coalesce(s.reactivated_customers, 0) <> a.reactivated_customers
       or coalesce(s.churned_customers, 0) <> a.churned_customers
       or coalesce(s.end_customers, 0) <> a.end_customers
)

select * from final
