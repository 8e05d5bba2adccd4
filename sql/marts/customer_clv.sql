-- customer_clv: each paying customer's probability of being alive, expected
-- purchases and lifetime value over the horizon, as of D.
-- grain: one row per customer with a purchase day (METRICS.md §14), scored with
-- the parameters of clv_model by the papers' formulas: `p_alive` and
-- `expected_purchases` (BG/NBD, the next metrics.clv.horizon_days days),
-- `expected_avg_value` (the Gamma-Gamma conditional mean; the population mean
-- p * gamma / (q - 1) when frequency is 0), `clv` = expected_purchases *
-- expected_avg_value, undiscounted. NULL where the model has no fit.
-- column as_of: The as-of date D (local date in the reporting timezone).
-- column customer_id: The customer.
-- column frequency: Repeat purchase days: distinct local dates with a succeeded payment after the first.
-- column recency: Days from the first to the last purchase day, in time units (weeks by default).
-- column t: Days from the first purchase day to D, in time units (weeks by default).
-- column monetary_value: Mean daily total of the purchase days after the first; NULL when frequency is 0.
-- column p_alive: Probability (0..1) that the customer is still active at D (BG/NBD).
-- column expected_purchases: Expected purchase days in the next metrics.clv.horizon_days days (default 365).
-- column expected_avg_value: Expected spend per purchase day (Gamma-Gamma), in the reporting currency.
-- column clv: Expected spend over the horizon, expected_purchases * expected_avg_value, undiscounted.
with customers as (
    select customer_id, frequency, recency, t, monetary_value from int_clv_inputs
),

model as (
    select as_of, r, alpha, a, b, p, q, gamma, time_unit_days from clv_model
),

run_params as (
    select clv_horizon_days from params
),

scored as (
    select
        model.as_of,
        customers.customer_id,
        customers.frequency,
        customers.recency,
        customers.t,
        customers.monetary_value,
        clv_p_alive(
            model.r, model.alpha, model.a, model.b,
            customers.frequency, customers.recency, customers.t
        ) as p_alive,
        clv_expected_purchases(
            model.r, model.alpha, model.a, model.b,
            customers.frequency, customers.recency, customers.t,
            cast(run_params.clv_horizon_days as double) / cast(model.time_unit_days as double)
        ) as expected_purchases,
        clv_expected_value(
            model.p, model.q, model.gamma, customers.frequency, customers.monetary_value
        ) as expected_avg_value
    from customers
    cross join model
    cross join run_params
),

final as (
    select
        as_of, customer_id, frequency, recency, t, monetary_value,
        p_alive, expected_purchases, expected_avg_value,
        expected_purchases * expected_avg_value as clv
    from scored
)

select
    as_of, customer_id, frequency, recency, t, monetary_value,
    p_alive, expected_purchases, expected_avg_value, clv
from final
