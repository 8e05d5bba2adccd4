-- ndr_trailing_12m: net and gross dollar retention of the customers paying 12 months earlier.
-- grain: one row per covered month m whose month m-12 is covered and segment
-- (at the cutoff of m-12) present in the base B = { c : MRR(c, m-12) > 0 }, plus an
-- 'all' row for every such month (METRICS.md §2, §10.6). Customers acquired
-- after m-12 never count.
-- Only the months from `tenure_rebuild_from()` on are computed, from the
-- customer months of a year before on.
-- incremental: month
-- column base_mrr: Sum of MRR at month m-12 over the base B (customers with MRR > 0 then), exact decimal in the reporting currency.
-- column current_mrr: Sum of MRR at month m over the base customers B (later customers never count), exact decimal in the reporting currency.
-- column ndr_12m: Trailing 12-month net dollar retention as a fraction, current_mrr / base_mrr; NULL when base_mrr is 0.
-- column grr_12m: Trailing 12-month GRR as a fraction (0..1), sum of min(MRR at m, MRR at m-12) / base_mrr; NULL when base_mrr is 0.
-- column base_customers: Number of base customers B, those with MRR > 0 at month m-12.
-- column retained_customers: Base customers that still have MRR > 0 at month m.
-- column month: First day of the covered month m, whose month m-12 is also covered (local date in the reporting timezone).
-- column segment: The base customers' segment at the cutoff of month m-12, or 'all' for every customer.
-- column is_complete: True unless this is the month containing the as-of date D and D is not its last day.
with months as (
    select month, month_index, is_complete from int_months
    where month >= tenure_rebuild_from()
),

customer_months as (
    select month, month_index, customer_id, segment, mrr from int_customer_months
),

base as (
    select
        current_months.month,
        base_months.segment,
        base_months.customer_id,
        base_months.mrr as base_mrr,
        current_months.mrr as current_mrr
    from customer_months as base_months
    inner join customer_months as current_months
        on current_months.customer_id = base_months.customer_id
       and current_months.month_index = base_months.month_index + 12
    -- the months first: a batch of kept rows of another month is dropped
    -- without its MRR being compared
    where current_months.month >= tenure_rebuild_from()
      and base_months.month >= cast(tenure_rebuild_from() - interval '12 months' as date)
      -- the last covered month is that of D, so no base month is later than D - 12 months
      and base_months.month <= cast(tenure_as_of() - interval '12 months' as date)
      and base_months.mrr > 0
),

attributed as (
    select month, segment, customer_id, base_mrr, current_mrr from base
    union all
    select month, 'all' as segment, customer_id, base_mrr, current_mrr from base
),

totals as (
    select
        month,
        segment,
        sum(base_mrr) as base_mrr,
        sum(current_mrr) as current_mrr,
        sum(least(current_mrr, base_mrr)) as retained_mrr,
        count(*) as base_customers,
        count(case when current_mrr > 0 then 1 end) as retained_customers
    from attributed
    group by month, segment
),

-- Every (month, segment) of the totals, and an 'all' row for every month with a
-- month 12 months before it, with or without a base.
all_months as (
    select month, 'all' as segment from months where month_index >= 12
),

final as (
    select
        coalesce(totals.month, all_months.month) as month,
        -- a row comes from one side or both; the last 'all' only keeps the column NOT NULL
        coalesce(totals.segment, all_months.segment, 'all') as segment,
        cast(coalesce(totals.base_mrr, 0) as decimal(38, 4)) as base_mrr,
        cast(coalesce(totals.current_mrr, 0) as decimal(38, 4)) as current_mrr,
        safe_divide(totals.current_mrr, totals.base_mrr) as ndr_12m,
        safe_divide(totals.retained_mrr, totals.base_mrr) as grr_12m,
        cast(coalesce(totals.base_customers, 0) as bigint) as base_customers,
        cast(coalesce(totals.retained_customers, 0) as bigint) as retained_customers
    from totals
    full join all_months
        on all_months.month = totals.month
       and all_months.segment = totals.segment
)

select
    final.base_mrr, final.current_mrr, final.ndr_12m, final.grr_12m, final.base_customers, final.retained_customers,
    final.month, final.segment, months.is_complete
from final
inner join months
    on months.month = final.month
order by final.month, final.segment
