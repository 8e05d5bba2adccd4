-- mrr_bridge_monthly: the MRR bridge, start to end of each month.
-- grain: one row per covered month and segment with at least one mrr_monthly row
-- in it, plus an 'all' row for every covered month (METRICS.md §1, §10.5, §10.6).
-- A customer counts in its segment at the cutoff of the month, for prev and cur.
-- Reconciles exactly: end = start + new + reactivation + expansion - contraction - churned.
-- Only the months from `tenure_rebuild_from()` on are computed.
-- incremental: month
-- column month: First day of the covered month (local date in the reporting timezone).
-- column segment: Customer segment at the cutoff of the month (for prev and cur), or 'all' for every customer.
-- column start_mrr: Sum of the customers' MRR at the end of the month before (prev), exact decimal in the reporting currency.
-- column new_mrr: MRR of customers with their first-ever MRR this month (movement new), exact decimal in the reporting currency.
-- column reactivation_mrr: MRR of customers paying again after an earlier paying month (reactivation), exact decimal in the reporting currency.
-- column expansion_mrr: Sum of cur - prev over customers whose MRR grew (movement expansion), exact decimal in the reporting currency.
-- column contraction_mrr: Sum of prev - cur over customers whose MRR fell but stayed above 0 (contraction), exact decimal in the reporting currency.
-- column churned_mrr: Sum of prev over customers whose MRR fell to 0 (movement churn), exact decimal in the reporting currency.
-- column end_mrr: Sum of MRR at the cutoff, = start + new + reactivation + expansion - contraction - churned; exact decimal money.
-- column start_customers: Customers with MRR > 0 at the end of the month before.
-- column new_customers: Customers with their first-ever MRR this month (movement new).
-- column reactivated_customers: Customers paying again after an earlier paying month (movement reactivation).
-- column churned_customers: Customers whose MRR fell to 0 this month (movement churn).
-- column end_customers: Customers with MRR > 0 at the cutoff of the month.
-- column ndr: Net dollar retention as a fraction, (start + expansion - contraction - churned) / start_mrr; NULL when start_mrr is 0.
-- column grr: Gross dollar retention as a fraction (0..1), (start - contraction - churned) / start_mrr; NULL when start_mrr is 0.
-- column is_complete: True unless this is the month containing the as-of date D and D is not its last day.
with months as (
    select month, is_complete from int_months
    where month >= tenure_rebuild_from()
),

movements as (
    select month, segment, mrr, prev_mrr, movement, movement_amount
    from mrr_monthly
    where month >= tenure_rebuild_from()
),

attributed as (
    select month, segment, mrr, prev_mrr, movement, movement_amount from movements
    union all
    select month, 'all' as segment, mrr, prev_mrr, movement, movement_amount from movements
),

totals as (
    select
        month,
        segment,
        sum(prev_mrr) as start_mrr,
        sum(case when movement = 'new' then movement_amount else 0 end) as new_mrr,
        sum(case when movement = 'reactivation' then movement_amount else 0 end) as reactivation_mrr,
        sum(case when movement = 'expansion' then movement_amount else 0 end) as expansion_mrr,
        sum(case when movement = 'contraction' then movement_amount else 0 end) as contraction_mrr,
        sum(case when movement = 'churn' then movement_amount else 0 end) as churned_mrr,
        sum(mrr) as end_mrr,
        count(case when prev_mrr > 0 then 1 end) as start_customers,
        count(case when movement = 'new' then 1 end) as new_customers,
        count(case when movement = 'reactivation' then 1 end) as reactivated_customers,
        count(case when movement = 'churn' then 1 end) as churned_customers,
        count(case when mrr > 0 then 1 end) as end_customers
    from attributed
    group by month, segment
),

month_segments as (
    select month, segment from totals
    union
    select month, 'all' as segment from months
),

final as (
    select
        month_segments.month,
        month_segments.segment,
        cast(coalesce(totals.start_mrr, 0) as decimal(38, 4)) as start_mrr,
        cast(coalesce(totals.new_mrr, 0) as decimal(38, 4)) as new_mrr,
        cast(coalesce(totals.reactivation_mrr, 0) as decimal(38, 4)) as reactivation_mrr,
        cast(coalesce(totals.expansion_mrr, 0) as decimal(38, 4)) as expansion_mrr,
        cast(coalesce(totals.contraction_mrr, 0) as decimal(38, 4)) as contraction_mrr,
        cast(coalesce(totals.churned_mrr, 0) as decimal(38, 4)) as churned_mrr,
        cast(coalesce(totals.end_mrr, 0) as decimal(38, 4)) as end_mrr,
        cast(coalesce(totals.start_customers, 0) as bigint) as start_customers,
        cast(coalesce(totals.new_customers, 0) as bigint) as new_customers,
        cast(coalesce(totals.reactivated_customers, 0) as bigint) as reactivated_customers,
        cast(coalesce(totals.churned_customers, 0) as bigint) as churned_customers,
        cast(coalesce(totals.end_customers, 0) as bigint) as end_customers,
        safe_divide(
            totals.start_mrr + totals.expansion_mrr - totals.contraction_mrr - totals.churned_mrr,
            totals.start_mrr
        ) as ndr,
        safe_divide(totals.start_mrr - totals.contraction_mrr - totals.churned_mrr, totals.start_mrr) as grr,
        months.is_complete
    from month_segments
    inner join months
        on months.month = month_segments.month
    left join totals
        on totals.month = month_segments.month
       and totals.segment = month_segments.segment
)

select
    month, segment, start_mrr, new_mrr, reactivation_mrr, expansion_mrr,
    contraction_mrr, churned_mrr, end_mrr, start_customers, new_customers,
    reactivated_customers, churned_customers, end_customers, ndr, grr, is_complete
from final
order by month, segment
