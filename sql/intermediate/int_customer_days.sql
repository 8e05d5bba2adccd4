-- int_customer_days: what each customer did on each local date, as counts.
-- grain: one row per customer and local date with a support, payment or email
-- event. Feeds activity (METRICS.md §3: succeeded payments) and the health
-- inputs (§7: tickets, failed payments, emails); usage is in int_usage_days.
-- A row depends only on its date's events, so the model is incremental by
-- day: a run computes the dates from `tenure_rebuild_from()` (the first
-- changed day) on and keeps the earlier rows.
-- incremental: local_date by day
with account_events as (
    select customer_id, event_type, priority, local_date
    from stg_account_events
    -- the date first: a batch of kept rows wholly before it is dropped
    -- without its event types being compared
    where local_date >= tenure_rebuild_from()
      and event_type in (
        'support.ticket_opened', 'payment.succeeded', 'payment.failed',
        'email.sent', 'email.opened'
    )
),

final as (
    select
        customer_id,
        local_date,
        count(case when event_type = 'support.ticket_opened' then 1 end) as tickets_opened,
        count(
            case when event_type = 'support.ticket_opened' and priority in ('high', 'urgent') then 1 end
        ) as urgent_tickets_opened,
        count(case when event_type = 'payment.succeeded' then 1 end) as payments_succeeded,
        count(case when event_type = 'payment.failed' then 1 end) as payments_failed,
        count(case when event_type = 'email.sent' then 1 end) as emails_sent,
        count(case when event_type = 'email.opened' then 1 end) as emails_opened
    from account_events
    group by customer_id, local_date
)

select
    customer_id, local_date, tickets_opened, urgent_tickets_opened,
    payments_succeeded, payments_failed, emails_sent, emails_opened
from final
