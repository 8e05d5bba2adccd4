-- stg_survey_payment_events: the accepted survey responses and successful payments.
-- grain: one row per row of stg_account_events whose type is `survey.nps`,
-- `survey.csat` or `payment.succeeded` (METRICS.md §4 sentiment, §11 and the
-- KPI summary), with the columns those models use. The models that read them
-- (int_health_inputs, retention_kpis_monthly, kpi_summary) are built late,
-- after the usage aggregates; reading this small table instead of
-- stg_account_events lets a run release the account events once the
-- customer-day and segment models are built, before the usage aggregates
-- peak. Incremental by day like stg_account_events: a run computes the events
-- dated from `tenure_rebuild_from()` on and keeps the earlier rows.
-- materialized: table
-- incremental: local_date by day
with survey_payment_events as (
    select event_id, event_type, customer_id, occurred_at, local_date, amount, score
    from stg_account_events
    -- the date first: a batch of kept rows wholly before it is dropped
    -- without its event types being compared
    where local_date >= tenure_rebuild_from()
      and event_type in ('survey.nps', 'survey.csat', 'payment.succeeded')
)

select event_id, event_type, customer_id, occurred_at, local_date, amount, score
from survey_payment_events
