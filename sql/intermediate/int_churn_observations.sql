-- int_churn_observations: what the churn model learns from and scores.
-- grain: one row per customer and snapshot date scored in customer_health
-- (METRICS.md §13). `churned_90d` is the backtest label (not active at d + 90,
-- §8 and §10.12), NULL while d + 90 > D. Every column after it is a feature of
-- the churn model (the churn kinds learn from every numeric column but
-- customer_id, snapshot_date, churned_90d, segment and mrr; add a feature by
-- adding a column): the seven component scores (a missing one is 0, with an
-- indicator), health_score, score_change (0 with an indicator when NULL),
-- ln(1 + MRR), whole months since the customer's cohort month (§4), and the
-- tickets opened and payments failed in the trailing 90 days.
with health as (
    select
        snapshot_date, customer_id, segment, mrr,
        usage_score, breadth_score, trend_score, sentiment_score, support_score,
        billing_score, email_score, health_score, score_change
    from customer_health
),

outcomes as (
    select snapshot_date, customer_id, churned_90d from int_health_outcomes
),

months as (
    select cutoff_date, month_index from int_months
),

customer_months as (
    select customer_id, month_index, is_active from int_customer_months
),

customer_days as (
    select customer_id, local_date, tickets_opened, payments_failed
    from int_customer_days
    where tickets_opened > 0 or payments_failed > 0
),

cohorts as (
    select customer_id, min(month_index) as cohort_index
    from customer_months
    where is_active
    group by customer_id
),

snapshots as (
    select distinct snapshot_date from health
),

offsets as (
    select snapshot_date, unnest(range(0, 90)) as days_before
    from snapshots
),

windows as (
    select snapshot_date, cast(snapshot_date - days_before as date) as local_date
    from offsets
),

trailing_events as (
    select
        customer_days.customer_id,
        windows.snapshot_date,
        sum(customer_days.tickets_opened) as tickets_opened,
        sum(customer_days.payments_failed) as payments_failed
    from customer_days
    inner join windows
        on windows.local_date = customer_days.local_date
    group by customer_days.customer_id, windows.snapshot_date
),

final as (
    select
        health.customer_id,
        health.snapshot_date,
        health.segment,
        health.mrr,
        outcomes.churned_90d,
        coalesce(health.usage_score, 0) as usage_score,
        coalesce(health.breadth_score, 0) as breadth_score,
        coalesce(health.trend_score, 0) as trend_score,
        coalesce(health.sentiment_score, 0) as sentiment_score,
        case when health.sentiment_score is null then 1.0 else 0.0 end as sentiment_missing,
        coalesce(health.support_score, 0) as support_score,
        coalesce(health.billing_score, 0) as billing_score,
        coalesce(health.email_score, 0) as email_score,
        case when health.email_score is null then 1.0 else 0.0 end as email_missing,
        health.health_score,
        coalesce(health.score_change, 0) as score_change,
        case when health.score_change is null then 1.0 else 0.0 end as score_change_missing,
        ln(1 + greatest(cast(health.mrr as double), 0)) as log_mrr,
        cast(months.month_index - cohorts.cohort_index as double) as months_since_cohort,
        cast(coalesce(trailing_events.tickets_opened, 0) as double) as tickets_90d,
        cast(coalesce(trailing_events.payments_failed, 0) as double) as failed_payments_90d
    from health
    inner join months
        on months.cutoff_date = health.snapshot_date
    left join outcomes
        on outcomes.customer_id = health.customer_id
       and outcomes.snapshot_date = health.snapshot_date
    left join cohorts
        on cohorts.customer_id = health.customer_id
    left join trailing_events
        on trailing_events.customer_id = health.customer_id
       and trailing_events.snapshot_date = health.snapshot_date
)

select
    customer_id, snapshot_date, segment, mrr, churned_90d,
    usage_score, breadth_score, trend_score, sentiment_score, sentiment_missing,
    support_score, billing_score, email_score, email_missing,
    health_score, score_change, score_change_missing,
    log_mrr, months_since_cohort, tickets_90d, failed_payments_90d
from final
