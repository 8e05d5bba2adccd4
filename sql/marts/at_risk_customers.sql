-- at_risk_customers: the customers to call first.
-- grain: one row per customer scored at D whose band is 'red' or whose score
-- dropped by at least `score_drop_threshold` since the previous snapshot
-- (METRICS.md §7, §10.2: compared rounded to 9 decimals), with its RFM segment
-- (NULL if it has none) and `risk_rank` by mrr descending, then customer_id.
-- column snapshot_date: The as-of date D, the only snapshot listed (local date in the reporting timezone).
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
-- column rfm_segment: The customer's segment in rfm_segments; NULL if it has none.
-- column risk_rank: Call order 1, 2, ... by mrr descending, then customer_id.
with run_params as (
    select score_drop_threshold from params
),

health as (
    select
        snapshot_date, customer_id, segment, mrr,
        usage_score, breadth_score, trend_score, sentiment_score, support_score, billing_score, email_score,
        health_score, band, top_drivers, score_change
    from customer_health
),

rfm as (
    select customer_id, segment from rfm_segments
),

flagged as (
    select
        health.snapshot_date, health.customer_id, health.segment, health.mrr,
        health.usage_score, health.breadth_score, health.trend_score, health.sentiment_score,
        health.support_score, health.billing_score, health.email_score,
        health.health_score, health.band, health.top_drivers, health.score_change
    from health
    cross join run_params
    where health.snapshot_date = tenure_as_of()
      and (
        health.band = 'red'
        or round(health.score_change, 9) <= -run_params.score_drop_threshold
      )
),

final as (
    select
        flagged.snapshot_date, flagged.customer_id, flagged.segment, flagged.mrr,
        flagged.usage_score, flagged.breadth_score, flagged.trend_score, flagged.sentiment_score,
        flagged.support_score, flagged.billing_score, flagged.email_score,
        flagged.health_score, flagged.band, flagged.top_drivers, flagged.score_change,
        rfm.segment as rfm_segment,
        cast(row_number() over (order by flagged.mrr desc, flagged.customer_id) as bigint) as risk_rank
    from flagged
    left join rfm
        on rfm.customer_id = flagged.customer_id
)

select
    snapshot_date, customer_id, segment, mrr,
    usage_score, breadth_score, trend_score, sentiment_score, support_score, billing_score, email_score,
    health_score, band, top_drivers, score_change, rfm_segment, risk_rank
from final
order by risk_rank
