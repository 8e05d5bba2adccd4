-- int_customer_months: the customer-month spine of MRR, segment and activity.
-- grain: one row per customer (§10.3) and covered month, continuous through the
-- month of D (METRICS.md §0, §1, §3). At the month's cutoff L(m): `mrr` = MRR(c, m),
-- `segment` (§0, §10.4; 'unknown' before any), `is_active` = active(c, L(m)).
-- From the month before: `prev_mrr` = MRR(c, m-1) and `was_active` (0 / false
-- before the first covered month). `had_mrr_before`: MRR(c, k) > 0 for some
-- earlier covered month k (tells `reactivation` from `new`). Only the months
-- from `tenure_rebuild_from()` on are computed (an incremental run keeps the
-- earlier rows; see int_customer_states for customers first seen since).
-- Joins, not window functions: windows over many small partitions cost
-- DataFusion far more than a hash join.
-- incremental: month
with months as (
    select month, cutoff_date, month_index, is_complete from int_months
),

customer_states as (
    select customer_id, cutoff_date, mrr, is_active from int_customer_states
),

segments as (
    select customer_id, segment, valid_from, valid_to from int_customer_segments
),

customer_months as (
    select
        months.month,
        months.cutoff_date,
        months.month_index,
        months.is_complete,
        customer_states.customer_id,
        customer_states.mrr,
        customer_states.is_active
    from months
    inner join customer_states
        on customer_states.cutoff_date = months.cutoff_date
),

first_paid as (
    -- the first covered month with MRR > 0, from the whole history
    select customer_id, min(month_index) as first_paid_index
    from customer_months
    where mrr > 0
    group by customer_id
),

computed as (
    select
        customer_months.month,
        customer_months.cutoff_date,
        customer_months.month_index,
        customer_months.is_complete,
        customer_months.customer_id,
        coalesce(segments.segment, 'unknown') as segment,
        customer_months.mrr,
        customer_months.is_active
    from customer_months
    left join segments
        on segments.customer_id = customer_months.customer_id
       and customer_months.cutoff_date between segments.valid_from and segments.valid_to
    where customer_months.month >= tenure_rebuild_from()
),

previous_months as (
    -- the month before each computed one (the kept rows of int_customer_states
    -- hold it when it is not computed)
    select customer_id, month_index, mrr, is_active
    from customer_months
    where cutoff_date >= tenure_rebuild_from() - 1
),

final as (
    select
        computed.month,
        computed.cutoff_date,
        computed.month_index,
        computed.is_complete,
        computed.customer_id,
        computed.segment,
        computed.mrr,
        cast(coalesce(previous_months.mrr, 0) as decimal(38, 4)) as prev_mrr,
        coalesce(first_paid.first_paid_index < computed.month_index, false) as had_mrr_before,
        computed.is_active,
        coalesce(previous_months.is_active, false) as was_active
    from computed
    left join previous_months
        on previous_months.customer_id = computed.customer_id
       and previous_months.month_index = computed.month_index - 1
    left join first_paid
        on first_paid.customer_id = computed.customer_id
)

select
    month, cutoff_date, month_index, is_complete, customer_id, segment,
    mrr, prev_mrr, had_mrr_before, is_active, was_active
from final
