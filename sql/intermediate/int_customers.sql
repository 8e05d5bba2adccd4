-- int_customers: the customers the metrics are about.
-- grain: one row per customer_id (METRICS.md §10.3): any `subscription.*` or
-- `payment.*` event with local date <= D (stg_account_events holds no later event).
with events as (
    select customer_id, event_type from stg_account_events
),

final as (
    select distinct customer_id
    from events
    where event_type like 'subscription.%' or event_type like 'payment.%'
)

select customer_id from final
