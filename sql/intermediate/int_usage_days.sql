-- int_usage_days: how many usage events each customer had on each local date.
-- grain: one row per customer and local date with a `usage.*` event;
-- `usage_events` counts events (METRICS.md §7 usage and trend; §10.11: `trend`
-- counts events, not `quantity`). A row depends only on its date's events, so
-- the model is incremental by day: a run computes the dates from
-- `tenure_rebuild_from()` (the first changed day) on, all that
-- stg_usage_events holds when read here, and keeps the earlier rows.
-- incremental: local_date by day
with usage as (
    select customer_id, local_date from stg_usage_events
),

final as (
    select
        customer_id,
        local_date,
        count(*) as usage_events
    from usage
    group by customer_id, local_date
)

select customer_id, local_date, usage_events from final
