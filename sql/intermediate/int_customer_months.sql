-- int_customer_months: the customer-month spine of MRR, segment and activity.
-- grain: one row per customer (§10.3) and covered month, continuous through the
-- month of D (METRICS.md §0, §1, §3). At the month's cutoff L(m): `mrr` = MRR(c, m),
-- `segment` (§0, §10.4; 'unknown' before any), `is_active` = active(c, L(m)).
-- From the month before: `prev_mrr` = MRR(c, m-1) and `was_active` (0 / false
-- before the first covered month). `had_mrr_before`: MRR(c, k) > 0 for some
-- earlier covered month k (tells `reactivation` from `new`). Only the months
-- from `tenure_rebuild_from()` on are computed (an incremental run keeps the
-- earlier rows; see int_customer_states for customers first seen since): the
-- month before them gives `prev_mrr` and `was_active`, and the months before
-- that are summed up per customer for `had_mrr_before`.
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

earlier_mrr as (
    -- the months before the month before the first computed one
    select customer_id, max(case when mrr > 0 then 1 else 0 end) as had_mrr
    from customer_months
    where cutoff_date < tenure_rebuild_from() - 1
    group by customer_id
),

with_segment as (
    -- the computed months and the month before them (whose cutoff is the
    -- day before the first)
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
    where customer_months.cutoff_date >= tenure_rebuild_from() - 1
),

windowed as (
    select
        with_segment.month,
        with_segment.cutoff_date,
        with_segment.month_index,
        with_segment.is_complete,
        with_segment.customer_id,
        with_segment.segment,
        with_segment.mrr,
        cast(
            coalesce(lag(with_segment.mrr) over (partition by with_segment.customer_id order by with_segment.month), 0)
            as decimal(38, 4)
        ) as prev_mrr,
        greatest(
            coalesce(earlier_mrr.had_mrr, 0),
            coalesce(
                max(case when with_segment.mrr > 0 then 1 else 0 end) over (
                    partition by with_segment.customer_id order by with_segment.month
                    rows between unbounded preceding and 1 preceding
                ),
                0
            )
        ) = 1 as had_mrr_before,
        with_segment.is_active,
        coalesce(
            lag(with_segment.is_active) over (partition by with_segment.customer_id order by with_segment.month),
            false
        ) as was_active
    from with_segment
    left join earlier_mrr
        on earlier_mrr.customer_id = with_segment.customer_id
),

final as (
    select * from windowed where month >= tenure_rebuild_from()
)

select
    month, cutoff_date, month_index, is_complete, customer_id, segment,
    mrr, prev_mrr, had_mrr_before, is_active, was_active
from final
