-- stg_usage_events: the accepted `usage.*` events, as the health score reads them.
-- grain: one row per accepted, de-duplicated usage event with local date in
-- [rebuild_from, D]. `tenure_rebuild_from()` is the first day the model
-- reading this view recomputes (far in the past on a full rebuild; on an
-- incremental run the start of the first changed month, or the first changed
-- day for a model incremental by day; see README "Incremental runs"), so an
-- incremental run reads only the usage the usage models recompute: they keep
-- their earlier rows. The bound on `occurred_at` (two days wider, for any
-- timezone) lets the scan skip older files; the exact bound is on the local
-- date. `feature` is NULL when absent or empty.
with usage_events as (
    select
        customer_id,
        tenure_local_date(occurred_at, tenure_timezone()) as local_date,
        nullif(feature, '') as feature
    from events
    where event_type like 'usage.%'
      and occurred_at >= arrow_cast(tenure_rebuild_from() - 2, 'Timestamp(µs, "UTC")')
),

final as (
    select customer_id, local_date, feature
    from usage_events
    where local_date <= tenure_as_of()
      and local_date >= tenure_rebuild_from()
)

select customer_id, local_date, feature from final
