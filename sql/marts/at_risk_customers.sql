-- at_risk_customers: the customers to call first.
-- grain: one row per customer scored at D whose band is 'red' or whose score
-- dropped by at least `score_drop_threshold` since the previous snapshot
-- (METRICS.md §7, §10.2: compared rounded to 9 decimals), with its RFM segment
-- (NULL if it has none) and `risk_rank` by mrr descending, then customer_id.
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
