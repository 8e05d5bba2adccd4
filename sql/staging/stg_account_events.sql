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
        event_id,
        event_type,
        customer_id,
        occurred_at,
        tenure_local_date(occurred_at, tenure_timezone()) as local_date,
        subscription_id,
        mrr,
        amount,
        priority,
        score,
        segment
    from events
    where event_type not like 'usage.%'
),

final as (
    select * from events where local_date <= tenure_as_of()
)

select
    event_id, event_type, customer_id, occurred_at, local_date,
    subscription_id, mrr, amount, priority, score, segment
from final
