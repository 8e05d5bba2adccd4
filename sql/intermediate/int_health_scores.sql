-- int_health_scores: the health score of every scored customer at every snapshot date.
-- grain: one row per snapshot date (the last day of every complete covered month,
-- and D) and customer active at it (METRICS.md §7, §10.2, §10.7, §10.11).
-- Components are 0..100; a missing one (NULL) drops out and the weights of the
-- others are renormalised. Weights, targets and bands come from `params`.
-- Scores are stored unrounded; band thresholds and driver ranking compare them
-- rounded to 9 decimals (round() is half away from zero). A snapshot's scores
-- depend only on its own inputs, so an incremental run computes the snapshots
-- from `tenure_rebuild_from()` on and keeps the earlier ones; customer_health
-- adds the change since the previous snapshot.
-- incremental: snapshot_date
with inputs as (
    select
        snapshot_date, previous_snapshot_date, customer_id, segment, mrr,
        active_days_30d, features_30d, usage_events_30d, usage_events_prior_30d,
        latest_nps_score, latest_csat_score, tickets_opened_30d, urgent_tickets_opened_30d,
        payments_failed_90d, emails_sent_90d, emails_opened_90d
    from int_health_inputs
),

weights as (
    select
        weight_usage, weight_breadth, weight_trend, weight_sentiment,
        weight_support, weight_billing, weight_email,
        target_active_days, target_features, band_green, band_yellow
    from params
),

component_scores as (
    select
        inputs.snapshot_date,
        inputs.previous_snapshot_date,
        inputs.customer_id,
        inputs.segment,
        inputs.mrr,
        least(100.0, safe_divide(100.0 * cast(inputs.active_days_30d as double), weights.target_active_days))
            as usage_score,
        least(100.0, safe_divide(100.0 * cast(inputs.features_30d as double), weights.target_features))
            as breadth_score,
        case
            when inputs.usage_events_prior_30d = 0 and inputs.usage_events_30d = 0 then 0.0
            when inputs.usage_events_prior_30d = 0 then 100.0
            else least(
                100.0,
                50.0 * cast(inputs.usage_events_30d as double) / cast(inputs.usage_events_prior_30d as double)
            )
        end as trend_score,
        case
            when inputs.latest_nps_score is not null then 10.0 * cast(inputs.latest_nps_score as double)
            when inputs.latest_csat_score is not null then 25.0 * cast(inputs.latest_csat_score - 1 as double)
        end as sentiment_score,
        greatest(
            0.0,
            100.0 - 15.0 * cast(inputs.tickets_opened_30d as double)
                  - 25.0 * cast(inputs.urgent_tickets_opened_30d as double)
        ) as support_score,
        greatest(0.0, 100.0 - 50.0 * cast(inputs.payments_failed_90d as double)) as billing_score,
        case
            when inputs.emails_sent_90d > 0 then least(
                100.0,
                100.0 * (cast(inputs.emails_opened_90d as double) / cast(inputs.emails_sent_90d as double)) / 0.4
            )
        end as email_score
    from inputs
    cross join weights
),

weighted as (
    -- a missing component (NULL score) adds neither to the sum nor to the weights
    select
        component_scores.*,
        safe_divide(
            coalesce(weights.weight_usage * usage_score, 0)
            + coalesce(weights.weight_breadth * breadth_score, 0)
            + coalesce(weights.weight_trend * trend_score, 0)
            + coalesce(weights.weight_sentiment * sentiment_score, 0)
            + coalesce(weights.weight_support * support_score, 0)
            + coalesce(weights.weight_billing * billing_score, 0)
            + coalesce(weights.weight_email * email_score, 0),
            case when usage_score is null then 0 else weights.weight_usage end
            + case when breadth_score is null then 0 else weights.weight_breadth end
            + case when trend_score is null then 0 else weights.weight_trend end
            + case when sentiment_score is null then 0 else weights.weight_sentiment end
            + case when support_score is null then 0 else weights.weight_support end
            + case when billing_score is null then 0 else weights.weight_billing end
            + case when email_score is null then 0 else weights.weight_email end
        ) as health_score,
        -- weighted shortfalls w * (100 - score), rounded for ranking; NULL when missing
        round(weights.weight_billing * (100 - billing_score), 9) as billing_shortfall,
        round(weights.weight_breadth * (100 - breadth_score), 9) as breadth_shortfall,
        round(weights.weight_email * (100 - email_score), 9) as email_shortfall,
        round(weights.weight_sentiment * (100 - sentiment_score), 9) as sentiment_shortfall,
        round(weights.weight_support * (100 - support_score), 9) as support_shortfall,
        round(weights.weight_trend * (100 - trend_score), 9) as trend_shortfall,
        round(weights.weight_usage * (100 - usage_score), 9) as usage_shortfall
    from component_scores
    cross join weights
),

first_driver as (
    -- the largest shortfall; the when-branches are in name order, so ties go by name
    select
        weighted.*,
        case greatest(
                billing_shortfall, breadth_shortfall, email_shortfall, sentiment_shortfall,
                support_shortfall, trend_shortfall, usage_shortfall
            )
            when billing_shortfall then 'billing'
            when breadth_shortfall then 'breadth'
            when email_shortfall then 'email'
            when sentiment_shortfall then 'sentiment'
            when support_shortfall then 'support'
            when trend_shortfall then 'trend'
            when usage_shortfall then 'usage'
        end as driver_1
    from weighted
),

other_shortfalls as (
    -- the shortfalls again, without the first driver's
    select
        first_driver.*,
        case when driver_1 = 'billing' then null else billing_shortfall end as billing_other,
        case when driver_1 = 'breadth' then null else breadth_shortfall end as breadth_other,
        case when driver_1 = 'email' then null else email_shortfall end as email_other,
        case when driver_1 = 'sentiment' then null else sentiment_shortfall end as sentiment_other,
        case when driver_1 = 'support' then null else support_shortfall end as support_other,
        case when driver_1 = 'trend' then null else trend_shortfall end as trend_other,
        case when driver_1 = 'usage' then null else usage_shortfall end as usage_other
    from first_driver
),

second_driver as (
    -- the largest of the other shortfalls, ties by name again
    select
        other_shortfalls.*,
        case greatest(
                billing_other, breadth_other, email_other, sentiment_other,
                support_other, trend_other, usage_other
            )
            when billing_other then 'billing'
            when breadth_other then 'breadth'
            when email_other then 'email'
            when sentiment_other then 'sentiment'
            when support_other then 'support'
            when trend_other then 'trend'
            when usage_other then 'usage'
        end as driver_2
    from other_shortfalls
),

banded as (
    select
        second_driver.*,
        case
            when round(health_score, 9) >= weights.band_green then 'green'
            when round(health_score, 9) >= weights.band_yellow then 'yellow'
            else 'red'
        end as band,
        driver_1 || ',' || driver_2 as top_drivers
    from second_driver
    cross join weights
),

final as (
    select
        snapshot_date, previous_snapshot_date, customer_id, segment, mrr,
        cast(usage_score as double) as usage_score,
        cast(breadth_score as double) as breadth_score,
        cast(trend_score as double) as trend_score,
        cast(sentiment_score as double) as sentiment_score,
        cast(support_score as double) as support_score,
        cast(billing_score as double) as billing_score,
        cast(email_score as double) as email_score,
        cast(health_score as double) as health_score,
        band, top_drivers
    from banded
)

select
    snapshot_date, previous_snapshot_date, customer_id, segment, mrr,
    usage_score, breadth_score, trend_score, sentiment_score, support_score, billing_score, email_score,
    health_score, band, top_drivers
from final
