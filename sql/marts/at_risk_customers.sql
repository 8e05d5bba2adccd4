-- at_risk_customers: the customers to call first.
-- grain: one row per customer scored at D whose band is 'red' or whose score
-- dropped by at least `score_drop_threshold` since the previous snapshot
-- (METRICS.md §7, §10.2: compared rounded to 9 decimals), with its RFM segment
-- (NULL if it has none) and `risk_rank` by mrr descending, then customer_id.
with run_params as (
    select as_of, score_drop_threshold from params
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
    select health.*
    from health
    inner join run_params
        on health.snapshot_date = run_params.as_of
    where health.band = 'red'
       or round(health.score_change, 9) <= -run_params.score_drop_threshold
),

final as (
    select
        flagged.*,
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
