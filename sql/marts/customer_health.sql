-- customer_health: the health score of every scored customer at every snapshot date.
-- grain: one row per snapshot date (the last day of every complete covered month,
-- and D) and customer active at it (METRICS.md §7, §10.2, §10.7, §10.11).
-- The scores, band and drivers are int_health_scores'; `score_change` is the
-- change since the previous snapshot date, NULL when the customer was not
-- scored at it. The snapshots are month ends and D, and `tenure_rebuild_from()`
-- is a month's first day, so the snapshot before the first recomputed one is
-- the day before it.
-- incremental: snapshot_date
with scores as (
    select
        snapshot_date, previous_snapshot_date, customer_id, segment, mrr,
        usage_score, breadth_score, trend_score, sentiment_score, support_score, billing_score, email_score,
        health_score, band, top_drivers
    from int_health_scores
    where snapshot_date >= tenure_rebuild_from()
),

previous as (
    select snapshot_date, customer_id, health_score
    from int_health_scores
    where snapshot_date >= tenure_rebuild_from() - 1
),

final as (
    select
        scores.snapshot_date,
        scores.customer_id,
        scores.segment,
        scores.mrr,
        scores.usage_score,
        scores.breadth_score,
        scores.trend_score,
        scores.sentiment_score,
        scores.support_score,
        scores.billing_score,
        scores.email_score,
        scores.health_score,
        scores.band,
        scores.top_drivers,
        scores.health_score - previous.health_score as score_change
    from scores
    left join previous
        on previous.customer_id = scores.customer_id
       and previous.snapshot_date = scores.previous_snapshot_date
)

select
    snapshot_date, customer_id, segment, mrr,
    usage_score, breadth_score, trend_score, sentiment_score, support_score, billing_score, email_score,
    health_score, band, top_drivers, score_change
from final
order by snapshot_date, customer_id
