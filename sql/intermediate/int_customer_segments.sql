-- int_customer_segments: each customer's segment as a step function of the local date.
-- grain: one row per customer and local date with a segment-setting event
-- (METRICS.md §0 "Segment", §10.4): the day's last `customer.created` /
-- `customer.updated` by (occurred_at, event_id) among those that set a non-empty
-- `segment` (events that leave it empty change nothing). Holds from `valid_from`
-- through `valid_to`; before the first one the segment is 'unknown'.
with events as (
    select customer_id, segment, local_date, occurred_at, event_id
    from stg_account_events
    where event_type in ('customer.created', 'customer.updated')
      and segment is not null
      and segment <> ''
),

day_end_segments as (
    -- the day's last event (an aggregate: cheaper than ranking the events of
    -- every customer-day with a window)
    select
        customer_id,
        first_value(segment order by occurred_at desc, event_id desc) as segment,
        local_date
    from events
    group by customer_id, local_date
),

final as (
    select
        day_end_segments.customer_id,
        day_end_segments.segment,
        day_end_segments.local_date as valid_from,
        coalesce(
            lead(day_end_segments.local_date) over (
                partition by day_end_segments.customer_id order by day_end_segments.local_date
            ) - 1,
            tenure_as_of()
        ) as valid_to
    from day_end_segments
)

select customer_id, segment, valid_from, valid_to
from final
