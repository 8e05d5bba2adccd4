-- customer_health: the health score of every scored customer at every snapshot date.
-- grain: one row per snapshot date (the last day of every complete covered month,
-- and D) and customer active at it (METRICS.md §7, §10.2, §10.7, §10.11).
-- The scores, band and drivers are int_health_scores'; `score_change` is the
-- change since the previous snapshot date, NULL when the customer was not
-- scored at it. The snapshots are month ends and D, and `tenure_rebuild_from()`
-- is a month's first day, so the snapshot before the first recomputed one is
-- the day before it.
-- incremental: snapshot_date
-- column snapshot_date: Snapshot date, the last day of a complete covered month or the as-of date D (local date).
-- column customer_id: The scored customer, active at the snapshot date.
-- column segment: The customer's segment at the snapshot date ('unknown' if none was set).
-- column mrr: The customer's MRR at the snapshot date, exact decimal in the reporting currency.
-- column usage_score: Usage component 0..100, min(100, 100 * days with usage in the trailing 30 days / target_active_days (default 20)).
-- column breadth_score: Breadth component 0..100, min(100, 100 * distinct features used in the trailing 30 days / target_features (default 5)).
-- column trend_score: Trend 0..100, min(100, 50 * u1 / u0) for usage events in the last 30 days (u1) and 30 before (u0); 0 if both 0, 100 if u0 = 0.
-- column sentiment_score: Sentiment component 0..100 from the latest NPS (10 * score), else CSAT (25 * (score - 1)), in 180 days; NULL when none.
-- column support_score: Support component 0..100, max(0, 100 - 15 * tickets opened - 25 * high or urgent ones) over the trailing 30 days.
-- column billing_score: Billing component 0..100, max(0, 100 - 50 * failed payments in the trailing 90 days).
-- column email_score: Email component 0..100, min(100, 100 * (opened / sent) / 0.4) over the trailing 90 days; NULL when no email was sent.
-- column health_score: Health score 0..100, the weighted mean of the non-missing component scores (weights renormalised).
-- column band: Health band, 'green' if health_score >= 70, 'yellow' if >= 40, else 'red' (thresholds from config).
-- column top_drivers: The two components with the largest weighted shortfall weight * (100 - score), comma-separated, e.g. 'usage,trend'.
-- column score_change: health_score minus the customer's score at the previous snapshot date; NULL if it was not scored then.
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
