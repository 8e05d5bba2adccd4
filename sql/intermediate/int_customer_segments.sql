-- int_customer_segments: each customer's segment as a step function of the local date.
-- grain: one row per customer and local date with a segment-setting event
-- (METRICS.md §0 "Segment", §10.4): the day's last `customer.created` /
-- `customer.updated` by (occurred_at, event_id) among those that set a non-empty
-- `segment` (events that leave it empty change nothing). Holds from `valid_from`
-- through `valid_to`; before the first one the segment is 'unknown'.
with segment_events as (
    select customer_id, segment, local_date, occurred_at, event_id
    from stg_account_events
    where event_type in ('customer.created', 'customer.updated')
      and segment is not null
      and segment <> ''
),

ordered_segments as (
    -- each event with the next event of all, in (customer_id, local_date,
    -- occurred_at, event_id) order: one window over one ordered stream, much
    -- cheaper than a window partitioned by customer (tens of thousands of
    -- tiny partitions) or a per-day aggregate. int_subscription_states has
    -- the same block over subscriptions, on purpose: one view over both would
    -- need `partition by` the kind for a reader's filter to reach below the
    -- window, and DataFusion then sorts a kind in one hash partition instead
    -- of in parallel; one table over both would hold int_subscription_states
    -- (and every monthly mart after it) until the segment events are sorted too
    select
        customer_id,
        segment,
        local_date,
        lead(customer_id) over events_in_order as next_customer_id,
        lead(local_date) over events_in_order as next_local_date
    from segment_events
    window events_in_order as (order by customer_id, local_date, occurred_at, event_id)
),

final as (
    -- the day's last event is the one whose next event (of the same
    -- customer) falls on a later day, or that has none; its segment holds
    -- until the day before that next event, or through D
    select
        customer_id,
        segment,
        local_date as valid_from,
        case
            when next_customer_id = customer_id then next_local_date - 1
            else tenure_as_of()
        end as valid_to
    from ordered_segments
    where next_customer_id is null
        or next_customer_id <> customer_id
        or next_local_date <> local_date
)

select customer_id, segment, valid_from, valid_to
from final
