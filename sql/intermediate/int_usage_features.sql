-- int_usage_features: the last day of each month on which a customer used a feature.
-- grain: one row per customer, non-empty `feature` (exact, case-sensitive) and
-- month of a `usage.*` event with that feature (METRICS.md §7 breadth,
-- §10.11). `last_used_date` is the latest local date in the month; since
-- staging holds no event after D, a feature was used in the 30 days ending at
-- a snapshot date d (a month end, or D) exactly when a row of a month up to
-- d's month has `last_used_date >= d - 29`. One row per feature and month
-- instead of per day keeps this small. A row depends only on its month's
-- events, so an incremental run computes the months from
-- `tenure_rebuild_from()` (a first of the month) on and keeps the earlier rows.
-- incremental: month
with usage as (
    select customer_id, feature, local_date
    from stg_usage_events
    where feature is not null
),

final as (
    select
        customer_id,
        feature,
        cast(date_trunc('month', local_date) as date) as month,
        max(local_date) as last_used_date
    from usage
    group by customer_id, feature, cast(date_trunc('month', local_date) as date)
)

select customer_id, feature, month, last_used_date from final
