-- int_clv_inputs: each paying customer's purchase history as the CLV models read it.
-- grain: one row per customer with a `payment.succeeded` with local date <= D
-- (METRICS.md §14). Purchase days are the distinct local dates with such a
-- payment, the amounts of a day summed. `frequency` = purchase days after the
-- first; `recency` = last - first purchase day and `t` = D - first purchase
-- day, both in days / metrics.clv.time_unit_days; `monetary_value` = the mean
-- daily total of the purchase days after the first (NULL when frequency is 0).
with payments as (
    select customer_id, local_date, amount
    from stg_billing_events
    where event_type = 'payment.succeeded'
      and local_date <= tenure_as_of()
),

run_params as (
    select clv_time_unit_days from params
),

purchase_days as (
    select customer_id, local_date, sum(amount) as day_total
    from payments
    group by customer_id, local_date
),

histories as (
    select
        customer_id,
        min(local_date) as first_purchase_date,
        max(local_date) as last_purchase_date,
        count(*) - 1 as frequency
    from purchase_days
    group by customer_id
),

repeat_spend as (
    select purchase_days.customer_id, sum(purchase_days.day_total) as repeat_total
    from purchase_days
    inner join histories
        on histories.customer_id = purchase_days.customer_id
    where purchase_days.local_date > histories.first_purchase_date
    group by purchase_days.customer_id
),

final as (
    select
        histories.customer_id,
        histories.first_purchase_date,
        histories.last_purchase_date,
        cast(histories.frequency as bigint) as frequency,
        cast(histories.last_purchase_date - histories.first_purchase_date as double)
            / cast(run_params.clv_time_unit_days as double) as recency,
        cast(tenure_as_of() - histories.first_purchase_date as double)
            / cast(run_params.clv_time_unit_days as double) as t,
        case
            when histories.frequency > 0
                then cast(coalesce(repeat_spend.repeat_total, 0) as double) / cast(histories.frequency as double)
        end as monetary_value
    from histories
    cross join run_params
    left join repeat_spend
        on repeat_spend.customer_id = histories.customer_id
)

select customer_id, first_purchase_date, last_purchase_date, frequency, recency, t, monetary_value
from final
