-- int_customers: the customers the metrics are about.
-- grain: one row per customer_id (METRICS.md §10.3): any `subscription.*` or
-- `payment.*` event with local date <= D (stg_billing_events holds no later event).
with billing_events as (
    select customer_id from stg_billing_events
),

final as (
    select distinct customer_id
    from billing_events
)

select customer_id from final
