-- finance_kpis_monthly: the subscription-analytics KPIs finance reports per month.
-- grain: the rows of mrr_bridge_monthly, one per covered month and segment plus
-- 'all' (METRICS.md §11), each computed from its bridge row:
-- net new MRR, quick ratio, gross and net MRR churn rate, customer churn rate,
-- ARPA, and LTV = ARPA / the mean customer churn rate of the same segment over
-- the up to 6 covered months before the month (months without a rate skipped).
-- Ratios are NULL on a zero denominator.
-- column month: First day of the covered month (local date in the reporting timezone).
-- column segment: Customer segment at the cutoff of the month, or 'all' (the rows of mrr_bridge_monthly).
-- column is_complete: True unless this is the month containing the as-of date D and D is not its last day.
-- column net_new_mrr: new + reactivation + expansion - contraction - churned MRR (= end_mrr - start_mrr), exact decimal in the reporting currency.
-- column quick_ratio: Ratio (new + reactivation + expansion) / (contraction + churned) MRR; NULL when contraction + churned is 0.
-- column gross_mrr_churn_rate: Fraction (0..1), (contraction + churned) / start_mrr; NULL when start_mrr is 0.
-- column net_mrr_churn_rate: Fraction, (contraction + churned - expansion - reactivation) / start_mrr, < 0 if gains win; NULL when start_mrr is 0.
-- column customer_churn_rate: Fraction (0..1), churned_customers / start_customers; NULL when start_customers is 0.
-- column arpa: Average revenue per account, end_mrr / end_customers, in the reporting currency; NULL when end_customers is 0.
-- column ltv: Lifetime value, arpa / mean customer_churn_rate of the segment over the up to 6 prior covered months; NULL if none or the mean is 0.
with bridge as (
    select
        month, segment, is_complete, start_mrr, new_mrr, reactivation_mrr,
        expansion_mrr, contraction_mrr, churned_mrr, end_mrr,
        start_customers, churned_customers, end_customers,
        safe_divide(churned_customers, start_customers) as customer_churn_rate
    from mrr_bridge_monthly
),

-- the mean customer churn rate of the 6 months before each month, per segment
-- (AVG skips NULL rates; a month without a row for the segment has none)
prior_churn as (
    select
        bridge.month,
        bridge.segment,
        avg(prior.customer_churn_rate) as mean_churn_rate
    from bridge
    inner join bridge as prior
        on prior.segment = bridge.segment
       and prior.month < bridge.month
       and prior.month >= cast(bridge.month - interval '6' month as date)
    group by bridge.month, bridge.segment
),

final as (
    select
        bridge.month,
        bridge.segment,
        bridge.is_complete,
        cast(
            bridge.new_mrr + bridge.reactivation_mrr + bridge.expansion_mrr
            - bridge.contraction_mrr - bridge.churned_mrr
            as decimal(38, 4)
        ) as net_new_mrr,
        safe_divide(
            bridge.new_mrr + bridge.reactivation_mrr + bridge.expansion_mrr,
            bridge.contraction_mrr + bridge.churned_mrr
        ) as quick_ratio,
        safe_divide(bridge.contraction_mrr + bridge.churned_mrr, bridge.start_mrr) as gross_mrr_churn_rate,
        safe_divide(
            bridge.contraction_mrr + bridge.churned_mrr - bridge.expansion_mrr - bridge.reactivation_mrr,
            bridge.start_mrr
        ) as net_mrr_churn_rate,
        bridge.customer_churn_rate,
        safe_divide(bridge.end_mrr, bridge.end_customers) as arpa,
        safe_divide(safe_divide(bridge.end_mrr, bridge.end_customers), prior_churn.mean_churn_rate) as ltv
    from bridge
    left join prior_churn
        on prior_churn.month = bridge.month
       and prior_churn.segment = bridge.segment
)

select
    month, segment, is_complete, net_new_mrr, quick_ratio, gross_mrr_churn_rate,
    net_mrr_churn_rate, customer_churn_rate, arpa, ltv
from final
order by month, segment
