-- int_health_inputs: the raw inputs of the health components.
-- grain: one row per snapshot date and customer scored at it, i.e. active at it
-- (METRICS.md §7). Windows end at the snapshot date d: usage, features and
-- tickets over the trailing 30 days, the 30 days before those for the trend,
-- failed payments and emails over 90 days, surveys over 180 days (the latest by
-- (occurred_at, event_id) of each kind). Counts are 0 when nothing happened;
-- `latest_nps_score` / `latest_csat_score` are NULL when there is no survey.
-- Only the snapshot dates of int_snapshot_windows (those this run recomputes).
with scored as (
    select cutoff_date as snapshot_date, customer_id, segment, mrr
    from int_customer_months
    where cutoff_date >= tenure_rebuild_from()
      and is_active
),

months as (
    select cutoff_date, previous_cutoff_date from int_months
),

windows as (
    select snapshot_date, local_date, days_before from int_snapshot_windows
),

-- (the windows of the snapshots from `tenure_rebuild_from()` on reach back
-- 90 days for tickets, payments and emails, 60 for usage, 30 for features and
-- 180 for surveys)
customer_days as (
    select
        customer_id, local_date, tickets_opened, urgent_tickets_opened,
        payments_failed, emails_sent, emails_opened
    from int_customer_days
    where local_date >= tenure_rebuild_from() - 89
),

usage_days as (
    select customer_id, local_date, usage_events from int_usage_days
    where local_date >= tenure_rebuild_from() - 59
),

usage_features as (
    select customer_id, feature, month, last_used_date from int_usage_features
    where last_used_date >= tenure_rebuild_from() - 29
),

snapshot_months as (
    -- the months the 30 days ending at each snapshot date touch
    select distinct
        snapshot_date,
        cast(date_trunc('month', local_date) as date) as month
    from windows
    where days_before < 30
),

surveys as (
    select customer_id, event_type, score, local_date, occurred_at, event_id
    from stg_survey_payment_events
    -- the date first: a batch of kept rows wholly before it is dropped
    -- without its event types being compared
    where local_date >= tenure_rebuild_from() - 179
      and event_type in ('survey.nps', 'survey.csat')
),

daily_counts as (
    select
        customer_days.customer_id,
        windows.snapshot_date,
        sum(case when windows.days_before < 30 then customer_days.tickets_opened else 0 end)
            as tickets_opened_30d,
        sum(case when windows.days_before < 30 then customer_days.urgent_tickets_opened else 0 end)
            as urgent_tickets_opened_30d,
        sum(customer_days.payments_failed) as payments_failed_90d,
        sum(customer_days.emails_sent) as emails_sent_90d,
        sum(customer_days.emails_opened) as emails_opened_90d
    from customer_days
    inner join windows
        on windows.local_date = customer_days.local_date
       and windows.days_before < 90
    group by customer_days.customer_id, windows.snapshot_date
),

usage_counts as (
    select
        usage_days.customer_id,
        windows.snapshot_date,
        count(case when windows.days_before < 30 then 1 end) as active_days_30d,
        sum(case when windows.days_before < 30 then usage_days.usage_events else 0 end)
            as usage_events_30d,
        sum(case when windows.days_before >= 30 then usage_days.usage_events else 0 end)
            as usage_events_prior_30d
    from usage_days
    inner join windows
        on windows.local_date = usage_days.local_date
       and windows.days_before < 60
    group by usage_days.customer_id, windows.snapshot_date
),

feature_counts as (
    select
        usage_features.customer_id,
        snapshot_months.snapshot_date,
        count(distinct usage_features.feature) as features_30d
    from usage_features
    inner join snapshot_months
        on snapshot_months.month = usage_features.month
    where usage_features.last_used_date >= snapshot_months.snapshot_date - 29
    group by usage_features.customer_id, snapshot_months.snapshot_date
),

latest_surveys as (
    -- the latest survey of each kind in the 180 days, by (occurred_at, event_id)
    select
        surveys.customer_id,
        windows.snapshot_date,
        first_value(surveys.score order by surveys.occurred_at desc, surveys.event_id desc)
            filter (where surveys.event_type = 'survey.nps') as latest_nps_score,
        first_value(surveys.score order by surveys.occurred_at desc, surveys.event_id desc)
            filter (where surveys.event_type = 'survey.csat') as latest_csat_score
    from surveys
    inner join windows
        on windows.local_date = surveys.local_date
    group by surveys.customer_id, windows.snapshot_date
),

final as (
    select
        scored.snapshot_date,
        months.previous_cutoff_date as previous_snapshot_date,
        scored.customer_id,
        scored.segment,
        scored.mrr,
        cast(coalesce(usage_counts.active_days_30d, 0) as bigint) as active_days_30d,
        cast(coalesce(feature_counts.features_30d, 0) as bigint) as features_30d,
        cast(coalesce(usage_counts.usage_events_30d, 0) as bigint) as usage_events_30d,
        cast(coalesce(usage_counts.usage_events_prior_30d, 0) as bigint) as usage_events_prior_30d,
        latest_surveys.latest_nps_score,
        latest_surveys.latest_csat_score,
        cast(coalesce(daily_counts.tickets_opened_30d, 0) as bigint) as tickets_opened_30d,
        cast(coalesce(daily_counts.urgent_tickets_opened_30d, 0) as bigint) as urgent_tickets_opened_30d,
        cast(coalesce(daily_counts.payments_failed_90d, 0) as bigint) as payments_failed_90d,
        cast(coalesce(daily_counts.emails_sent_90d, 0) as bigint) as emails_sent_90d,
        cast(coalesce(daily_counts.emails_opened_90d, 0) as bigint) as emails_opened_90d
    from scored
    inner join months
        on months.cutoff_date = scored.snapshot_date
    left join daily_counts
        on daily_counts.customer_id = scored.customer_id
       and daily_counts.snapshot_date = scored.snapshot_date
    left join usage_counts
        on usage_counts.customer_id = scored.customer_id
       and usage_counts.snapshot_date = scored.snapshot_date
    left join feature_counts
        on feature_counts.customer_id = scored.customer_id
       and feature_counts.snapshot_date = scored.snapshot_date
    left join latest_surveys
        on latest_surveys.customer_id = scored.customer_id
       and latest_surveys.snapshot_date = scored.snapshot_date
)

select
    snapshot_date, previous_snapshot_date, customer_id, segment, mrr,
    active_days_30d, features_30d, usage_events_30d, usage_events_prior_30d,
    latest_nps_score, latest_csat_score, tickets_opened_30d, urgent_tickets_opened_30d,
    payments_failed_90d, emails_sent_90d, emails_opened_90d
from final
