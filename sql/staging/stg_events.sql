-- stg_events: every accepted event, with every column, as the metrics see it.
-- grain: one row per accepted, de-duplicated event (METRICS.md §0).
-- `local_date` is the event's date in the run's reporting timezone (which may
-- differ from the timezone `event_date` was written with), and events after
-- the as-of date are dropped (§10.13). A view for models of your own: the
-- built-in models read stg_account_events and stg_usage_events, which split
-- the same events by family so that each is read once.
with localized as (
    select
        event_id, event_type, customer_id, occurred_at,
        tenure_local_date(occurred_at, tenure_timezone()) as local_date,
        subscription_id, plan, mrr, currency, seats, amount, payment_id,
        feature, user_id, quantity, ticket_id, priority, score, campaign_id,
        name, segment, country, industry, owner, reason, comment
    from events
),

final as (
    select * from localized where local_date <= tenure_as_of()
)

select
    event_id, event_type, customer_id, occurred_at, local_date,
    subscription_id, plan, mrr, currency, seats, amount, payment_id,
    feature, user_id, quantity, ticket_id, priority, score, campaign_id,
    name, segment, country, industry, owner, reason, comment
from final
