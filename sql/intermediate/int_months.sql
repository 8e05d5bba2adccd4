-- int_months: the covered months and their cutoffs.
-- grain: one row per covered month (METRICS.md §0 "Months covered", "Cutoff of a month").
-- Coverage runs from the first month with a `subscription.*` or `payment.*` event
-- through the month containing the as-of date D; no such event, no months.
-- `cutoff_date` is L(m): the last day of the month, or D for the month of D.
-- The cutoffs are also the health snapshot dates (§7), with
-- `previous_cutoff_date` the snapshot before (§10.7).
with billing_events as (
    select local_date from stg_billing_events
),

first_billing_month as (
    select cast(date_trunc('month', min(local_date)) as date) as first_month
    from billing_events
),

bounds as (
    select
        first_month,
        cast(date_trunc('month', tenure_as_of()) as date) as last_month
    from first_billing_month
    where first_month is not null
),

months as (
    select
        unnest(range(first_month, last_month + interval '1 month', interval '1 month')) as month,
        last_month
    from bounds
),

cutoffs as (
    select
        month,
        case
            when month = last_month then tenure_as_of()
            else cast(month + interval '1 month' as date) - 1
        end as cutoff_date
    from months
),

final as (
    select
        month,
        cutoff_date,
        lag(cutoff_date) over (order by month) as previous_cutoff_date,
        cast(row_number() over (order by month) - 1 as bigint) as month_index,
        cutoff_date = cast(month + interval '1 month' as date) - 1 as is_complete
    from cutoffs
)

select month, cutoff_date, previous_cutoff_date, month_index, is_complete
from final
