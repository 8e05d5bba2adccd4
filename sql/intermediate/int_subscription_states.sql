-- int_subscription_states: the MRR of each subscription, as a step function of the local date.
-- grain: one row per subscription and local date with a subscription event
-- (METRICS.md §1, §10.3). The state of a day is set by the day's last event by
-- (occurred_at, event_id): started/changed/resumed set `mrr`, paused/cancelled
-- set 0, and the subscription belongs to that event's customer. A state holds
-- from `valid_from` through `valid_to` (the day before the next state, or D).
with subscription_events as (
    select subscription_id, customer_id, event_type, mrr, local_date, occurred_at, event_id
    from stg_billing_events
    where event_type in (
        'subscription.started', 'subscription.changed', 'subscription.resumed',
        'subscription.paused', 'subscription.cancelled'
    )
),

event_states as (
    select
        subscription_id,
        customer_id,
        local_date,
        case
            when event_type in ('subscription.paused', 'subscription.cancelled')
                then cast(0 as decimal(38, 4))
            else cast(mrr as decimal(38, 4))
        end as mrr,
        occurred_at,
        event_id
    from subscription_events
),

ordered_states as (
    -- each event with the next event of all, in (subscription_id, local_date,
    -- occurred_at, event_id) order: one window over one ordered stream, much
    -- cheaper than a window partitioned by subscription (tens of thousands of
    -- tiny partitions) or a per-day aggregate (int_customer_segments has the
    -- same block over segment events, and says why it is not shared)
    select
        subscription_id,
        customer_id,
        local_date,
        mrr,
        lead(subscription_id) over events_in_order as next_subscription_id,
        lead(local_date) over events_in_order as next_local_date
    from event_states
    window events_in_order as (order by subscription_id, local_date, occurred_at, event_id)
),

final as (
    -- the day's last event is the one whose next event (of the same
    -- subscription) falls on a later day, or that has none; its state holds
    -- until the day before that next event, or through D
    select
        subscription_id,
        customer_id,
        mrr,
        local_date as valid_from,
        case
            when next_subscription_id = subscription_id then next_local_date - 1
            else tenure_as_of()
        end as valid_to
    from ordered_states
    where next_subscription_id is null
        or next_subscription_id <> subscription_id
        or next_local_date <> local_date
)

select subscription_id, customer_id, mrr, valid_from, valid_to
from final
