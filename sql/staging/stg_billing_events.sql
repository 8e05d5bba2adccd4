-- stg_billing_events: the accepted subscription and payment events.
-- grain: one row per row of stg_account_events whose type is `subscription.*`
-- or `payment.*` (METRICS.md §1-§3: MRR, the covered months, activity and
-- RFM), with its columns. About a fifth of the account events: the models
-- that read every billing event of the whole history (int_months,
-- int_customers, int_subscription_states, rfm_segments) read these instead of
-- comparing the type of every account event each. Incremental by day like
-- stg_account_events: a run computes the events dated from
-- `tenure_rebuild_from()` on and keeps the earlier rows.
-- materialized: table
-- incremental: local_date by day
with billing_events as (
    select
        event_id, event_type, customer_id, occurred_at, local_date,
        subscription_id, mrr, amount
    from stg_account_events
    -- the date first: a batch of kept rows wholly before it is dropped
    -- without its event types being compared
    where local_date >= tenure_rebuild_from()
      and (event_type like 'subscription.%' or event_type like 'payment.%')
)

select
    event_id, event_type, customer_id, occurred_at, local_date,
    subscription_id, mrr, amount
from billing_events
