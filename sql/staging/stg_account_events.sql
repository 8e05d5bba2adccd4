-- stg_account_events: the accepted events other than product usage, as the metrics see them.
-- grain: one row per accepted, de-duplicated event whose type is not `usage.*`:
-- customers, subscriptions, payments, support, surveys and email (METRICS.md §0).
-- These are about a tenth of the events but feed most models, so they are read
-- from `events` once per run and held (materialized: table), with only the
-- columns the metrics use. `local_date` is the date in the run's reporting
-- timezone; events after the as-of date are dropped here, once (§10.13).
-- materialized: table
with events as (
    select
        event_id, event_type, customer_id, occurred_at, subscription_id,
        mrr, amount, priority, score, segment
    from events
    where event_type not like 'usage.%'
),

params as (
    select as_of, timezone from params
),

localized as (
    select
        events.event_id,
        events.event_type,
        events.customer_id,
        events.occurred_at,
        tenure_local_date(events.occurred_at, params.timezone) as local_date,
        events.subscription_id,
        events.mrr,
        events.amount,
        events.priority,
        events.score,
        events.segment,
        params.as_of
    from events
    cross join params
),

final as (
    select * from localized where local_date <= as_of
)

select
    event_id, event_type, customer_id, occurred_at, local_date,
    subscription_id, mrr, amount, priority, score, segment
from final
