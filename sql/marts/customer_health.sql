-- customer_health: the health score of every scored customer at every snapshot date.
-- grain: one row per snapshot date (the last day of every complete covered month,
-- and D) and customer active at it (METRICS.md §7, §10.2, §10.7, §10.11).
-- Components are 0..100; a missing one (NULL) drops out and the weights of the
-- others are renormalised. Weights, targets and bands come from `params`.
-- Scores are stored unrounded; band thresholds and driver ranking compare them
-- rounded to 9 decimals (round() is half away from zero).
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
        inputs.customer_id,
        least(100.0, 100.0 * cast(inputs.active_days_30d as double) / nullif(weights.target_active_days, 0))
            as usage_score,
        least(100.0, 100.0 * cast(inputs.features_30d as double) / nullif(weights.target_features, 0))
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

components as (
    -- one row per scored customer, snapshot date and component; NULL score = missing
    select snapshot_date, customer_id, 'usage' as component, weights.weight_usage as weight, usage_score as score
    from component_scores cross join weights
    union all
    select snapshot_date, customer_id, 'breadth', weights.weight_breadth, breadth_score
    from component_scores cross join weights
    union all
    select snapshot_date, customer_id, 'trend', weights.weight_trend, trend_score
    from component_scores cross join weights
    union all
    select snapshot_date, customer_id, 'sentiment', weights.weight_sentiment, sentiment_score
    from component_scores cross join weights
    union all
    select snapshot_date, customer_id, 'support', weights.weight_support, support_score
    from component_scores cross join weights
    union all
    select snapshot_date, customer_id, 'billing', weights.weight_billing, billing_score
    from component_scores cross join weights
    union all
    select snapshot_date, customer_id, 'email', weights.weight_email, email_score
    from component_scores cross join weights
),

ranked_shortfalls as (
    select
        snapshot_date,
        customer_id,
        component,
        row_number() over (
            partition by snapshot_date, customer_id
            order by round(weight * (100 - score), 9) desc, component
        ) as driver_rank
    from components
    where score is not null
),

top_drivers as (
    select
        snapshot_date,
        customer_id,
        string_agg(component, ',' order by driver_rank) as top_drivers
    from ranked_shortfalls
    where driver_rank <= 2
    group by snapshot_date, customer_id
),

health_scores as (
    select
        snapshot_date,
        customer_id,
        sum(weight * score) / nullif(sum(weight), 0) as health_score
    from components
    where score is not null
    group by snapshot_date, customer_id
),

scored as (
    select
        inputs.snapshot_date,
        inputs.previous_snapshot_date,
        inputs.customer_id,
        inputs.segment,
        inputs.mrr,
        component_scores.usage_score,
        component_scores.breadth_score,
        component_scores.trend_score,
        component_scores.sentiment_score,
        component_scores.support_score,
        component_scores.billing_score,
        component_scores.email_score,
        health_scores.health_score,
        case
            when round(health_scores.health_score, 9) >= weights.band_green then 'green'
            when round(health_scores.health_score, 9) >= weights.band_yellow then 'yellow'
            else 'red'
        end as band,
        arrow_cast(top_drivers.top_drivers, 'Utf8') as top_drivers
    from inputs
    cross join weights
    inner join component_scores
        on component_scores.snapshot_date = inputs.snapshot_date
       and component_scores.customer_id = inputs.customer_id
    inner join health_scores
        on health_scores.snapshot_date = inputs.snapshot_date
       and health_scores.customer_id = inputs.customer_id
    inner join top_drivers
        on top_drivers.snapshot_date = inputs.snapshot_date
       and top_drivers.customer_id = inputs.customer_id
),

with_previous as (
    select
        scored.*,
        lag(snapshot_date) over (partition by customer_id order by snapshot_date) as last_scored_date,
        lag(health_score) over (partition by customer_id order by snapshot_date) as last_health_score
    from scored
),

final as (
    select
        snapshot_date,
        customer_id,
        segment,
        mrr,
        cast(usage_score as double) as usage_score,
        cast(breadth_score as double) as breadth_score,
        cast(trend_score as double) as trend_score,
        cast(sentiment_score as double) as sentiment_score,
        cast(support_score as double) as support_score,
        cast(billing_score as double) as billing_score,
        cast(email_score as double) as email_score,
        cast(health_score as double) as health_score,
        band,
        top_drivers,
        case
            when last_scored_date = previous_snapshot_date then cast(health_score - last_health_score as double)
        end as score_change
    from with_previous
)

select
    snapshot_date, customer_id, segment, mrr,
    usage_score, breadth_score, trend_score, sentiment_score, support_score, billing_score, email_score,
    health_score, band, top_drivers, score_change
from final
order by snapshot_date, customer_id
