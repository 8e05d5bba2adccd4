-- cohort_retention: logo and revenue retention of each cohort, month by month.
-- grain: one row per cohort month k and covered month m >= k (METRICS.md §4). A
-- customer's cohort is the first covered month in which it is active (§3).
-- Only the months from `tenure_rebuild_from()` on are computed; cohorts and
-- their start come from the whole history.
-- incremental: month
-- column cohort_month: First day of the cohort month k, the first covered month in which the customers were active.
-- column month: First day of the covered month m, on or after cohort_month (local date in the reporting timezone).
-- column months_since: Whole months from cohort_month to month (m - k; 0 in the cohort month).
-- column cohort_size: Number of customers in the cohort.
-- column active_customers: Cohort members active at month m.
-- column logo_retention: Fraction (0..1) of the cohort active at month m, active_customers / cohort_size.
-- column cohort_start_mrr: Sum of the cohort members' MRR in the cohort month, exact decimal in the reporting currency.
-- column mrr: Sum of the cohort members' MRR at month m, exact decimal in the reporting currency.
-- column revenue_retention: Revenue retention as a fraction, mrr / cohort_start_mrr; NULL when cohort_start_mrr is 0.
with customer_months as (
    select month, month_index, customer_id, mrr, is_active from int_customer_months
),

cohorts as (
    select customer_id, min(month_index) as cohort_index
    from customer_months
    where is_active
    group by customer_id
),

members as (
    select
        cohort_months.month as cohort_month,
        cohort_months.mrr as cohort_start_mrr,
        customer_months.month,
        customer_months.month_index - cohorts.cohort_index as months_since,
        customer_months.customer_id,
        customer_months.is_active,
        customer_months.mrr
    from cohorts
    inner join customer_months as cohort_months
        on cohort_months.customer_id = cohorts.customer_id
       and cohort_months.month_index = cohorts.cohort_index
    inner join customer_months
        on customer_months.customer_id = cohorts.customer_id
       and customer_months.month_index >= cohorts.cohort_index
    where customer_months.month >= tenure_rebuild_from()
),

totals as (
    select
        cohort_month,
        month,
        months_since,
        count(*) as cohort_size,
        count(case when is_active then 1 end) as active_customers,
        sum(cohort_start_mrr) as cohort_start_mrr,
        sum(mrr) as mrr
    from members
    group by cohort_month, month, months_since
),

final as (
    select
        cohort_month,
        month,
        cast(months_since as bigint) as months_since,
        cast(cohort_size as bigint) as cohort_size,
        cast(active_customers as bigint) as active_customers,
        safe_divide(active_customers, cohort_size) as logo_retention,
        cast(cohort_start_mrr as decimal(38, 4)) as cohort_start_mrr,
        cast(mrr as decimal(38, 4)) as mrr,
        safe_divide(mrr, cohort_start_mrr) as revenue_retention
    from totals
)

select
    cohort_month, month, months_since, cohort_size, active_customers, logo_retention,
    cohort_start_mrr, mrr, revenue_retention
from final
order by cohort_month, month
