-- int_subscription_states: the MRR of each subscription, as a step function of the local date.
-- grain: one row per subscription and local date with a subscription event
-- (METRICS.md §1, §10.3). The state of a day is set by the day's last event by
-- (occurred_at, event_id): started/changed/resumed set `mrr`, paused/cancelled
-- set 0, and the subscription belongs to that event's customer. A state holds
-- from `valid_from` through `valid_to` (the day before the next state, or D).
with events as (
    select subscription_id, customer_id, event_type, mrr, local_date, occurred_at, event_id
    from stg_account_events
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
    from events
),

day_end_states as (
    -- the day's last event (an aggregate: cheaper than ranking the events of
    -- every subscription-day with a window)
    select
        subscription_id,
        first_value(customer_id order by occurred_at desc, event_id desc) as customer_id,
        local_date,
        first_value(mrr order by occurred_at desc, event_id desc) as mrr
    from event_states
    group by subscription_id, local_date
),

final as (
    select
        day_end_states.subscription_id,
        day_end_states.customer_id,
        day_end_states.mrr,
        day_end_states.local_date as valid_from,
        coalesce(
            lead(day_end_states.local_date) over (
                partition by day_end_states.subscription_id order by day_end_states.local_date
            ) - 1,
            tenure_as_of()
        ) as valid_to
    from day_end_states
)

select subscription_id, customer_id, mrr, valid_from, valid_to
from final
