-- int_customer_feature_days: the features each customer used on each local date.
-- grain: one row per customer, non-empty `feature` (exact, case-sensitive) and
-- local date of a `usage.*` event (METRICS.md §7 breadth, §10.11).
with events as (
    select customer_id, feature, local_date
    from stg_events
    where event_type like 'usage.%'
      and feature is not null
      and feature <> ''
),

final as (
    select distinct customer_id, feature, local_date
    from events
)

select customer_id, feature, local_date from final
