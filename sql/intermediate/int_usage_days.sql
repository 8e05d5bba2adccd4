-- int_usage_days: how much each customer used each feature on each local date.
-- grain: one row per customer, local date and `feature` of a `usage.*` event
-- (NULL: events without a feature), with `usage_events` = the number of
-- events (METRICS.md §7 usage, breadth and trend; §10.11: features compared
-- exactly, empty ones excluded, `trend` counts events). The one aggregate of
-- the usage events, which are most of `events`; only the dates that the
-- rebuilt snapshots look at (see stg_usage_events).
with usage as (
    select customer_id, local_date, feature from stg_usage_events
),

final as (
    select
        customer_id,
        local_date,
        feature,
        count(*) as usage_events
    from usage
    group by customer_id, local_date, feature
)

select customer_id, local_date, feature, usage_events from final
