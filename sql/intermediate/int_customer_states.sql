-- int_customer_states: MRR and activity of every customer at the end of every cutoff date.
-- grain: one row per customer (§10.3) and date of int_cutoff_dates.
-- `mrr` is MRR(c) at the end of the date (METRICS.md §1: the sum of the states of
-- the subscriptions whose latest event belongs to c); `is_active` is active(c, d)
-- of §3: mrr > 0, or a `payment.succeeded` in the trailing
-- `activity_window_days` ending at the date. A row depends only on events up to
-- its date, so an incremental run computes the dates from
-- `tenure_rebuild_from()` on and keeps the earlier rows (a customer first seen
-- since has no rows before, where a full rebuild gives it rows of zero MRR,
-- inactive: no metric counts those).
-- incremental: cutoff_date
with customers as (
    select customer_id from int_customers
),

cutoff_dates as (
    select cutoff_date from int_cutoff_dates
    where cutoff_date >= tenure_rebuild_from()
),

subscription_states as (
    select customer_id, mrr, valid_from, valid_to from int_subscription_states
),

payment_days as (
    select customer_id, local_date from int_customer_days where payments_succeeded > 0
),

run_params as (
    select activity_window_days from params
),

customer_mrr as (
    select
        subscription_states.customer_id,
        cutoff_dates.cutoff_date,
        cast(sum(subscription_states.mrr) as decimal(38, 4)) as mrr
    from subscription_states
    inner join cutoff_dates
        on cutoff_dates.cutoff_date between subscription_states.valid_from and subscription_states.valid_to
    group by subscription_states.customer_id, cutoff_dates.cutoff_date
),

activity_windows as (
    -- the local dates of the trailing activity window of every cutoff date
    select
        cutoff_dates.cutoff_date,
        cast(cutoff_dates.cutoff_date - offsets.days_before as date) as local_date
    from cutoff_dates
    cross join (
        select unnest(range(0, activity_window_days)) as days_before from run_params
    ) as offsets
),

recent_payers as (
    select distinct
        payment_days.customer_id,
        activity_windows.cutoff_date
    from payment_days
    inner join activity_windows
        on activity_windows.local_date = payment_days.local_date
),

customer_dates as (
    select customers.customer_id, cutoff_dates.cutoff_date
    from customers
    cross join cutoff_dates
),

final as (
    select
        customer_dates.customer_id,
        customer_dates.cutoff_date,
        coalesce(customer_mrr.mrr, cast(0 as decimal(38, 4))) as mrr,
        recent_payers.customer_id is not null as has_recent_payment,
        coalesce(customer_mrr.mrr, 0) > 0 or recent_payers.customer_id is not null as is_active
    from customer_dates
    left join customer_mrr
        on customer_mrr.customer_id = customer_dates.customer_id
       and customer_mrr.cutoff_date = customer_dates.cutoff_date
    left join recent_payers
        on recent_payers.customer_id = customer_dates.customer_id
       and recent_payers.cutoff_date = customer_dates.cutoff_date
)

select customer_id, cutoff_date, mrr, has_recent_payment, is_active
from final
