-- int_snapshot_windows: the trailing days of every health snapshot date.
-- grain: one row per snapshot date and local date in the 180 days ending at it
-- (METRICS.md §7: snapshots are the cutoffs L(m), i.e. the last day of every
-- complete covered month and D). `days_before` = snapshot_date - local_date, so
-- "trailing N days" is `days_before < N`. Only the snapshot dates this run
-- recomputes: those from `tenure_rebuild_from()` on.
with months as (
    select cutoff_date from int_months
    where cutoff_date >= tenure_rebuild_from()
),

offsets as (
    select
        cutoff_date as snapshot_date,
        unnest(range(0, 180)) as days_before
    from months
),

final as (
    select
        snapshot_date,
        cast(snapshot_date - days_before as date) as local_date,
        cast(days_before as bigint) as days_before
    from offsets
)

select snapshot_date, local_date, days_before from final
