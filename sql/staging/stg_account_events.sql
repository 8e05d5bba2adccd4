-- stg_account_events: the accepted events other than product usage, as the metrics see them.
-- grain: one row per accepted, de-duplicated event whose type is not `usage.*`:
-- customers, subscriptions, payments, support, surveys and email (METRICS.md §0).
-- These are about a tenth of the events but feed most models, so they are read
-- from `events` once per run and held (materialized: table), with only the
-- columns the metrics use. `local_date` is the date in the run's reporting
-- timezone; events after the as-of date are dropped here, once (§10.13).
-- Incremental by day (a row is one event): a run computes only the events
-- dated from `tenure_rebuild_from()` on, the first changed day, and keeps the
-- base's earlier rows (its state), so a daily run decodes one day of events. The bound on `occurred_at` (two days
-- wider, for any timezone) lets the scan skip older files; the exact bound is
-- on the local date.
-- materialized: table
-- incremental: local_date by day
with account_events as (
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
      and occurred_at >= arrow_cast(tenure_rebuild_from() - 2, 'Timestamp(µs, "UTC")')
),

final as (
    select * from account_events
    where local_date <= tenure_as_of()
      and local_date >= tenure_rebuild_from()
)

select
    event_id, event_type, customer_id, occurred_at, local_date,
    subscription_id, mrr, amount, priority, score, segment
from final
