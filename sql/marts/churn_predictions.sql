-- churn_predictions: who is most likely to churn in the next 90 days, and why.
-- grain: one row per customer scored in customer_health at D (METRICS.md §13).
-- `churn_probability_90d` and `top_factors` are int_churn_scores' (the model
-- refit on every labelled observation); `risk_decile` = NTILE(10) by
-- probability descending, then customer_id (1 = the riskiest tenth). NULL
-- probabilities and deciles when no model could be fit.
-- column as_of: The as-of date D (local date in the reporting timezone).
-- column customer_id: The customer, scored in customer_health at D.
-- column segment: The customer's segment at D ('unknown' if none was set).
-- column mrr: The customer's MRR at D, exact decimal in the reporting currency.
-- column health_score: The customer's health score at D (0..100).
-- column churn_probability_90d: Probability (0..1) that the customer churns within 90 days, from the learned model.
-- column risk_decile: 1..10, NTILE(10) by probability descending then customer_id; 1 = the riskiest tenth.
-- column top_factors: The two features raising the customer's churn log-odds most against the average customer, e.g. 'usage_score,score_change'.
with health as (
    select customer_id, segment, mrr, health_score
    from customer_health
    where snapshot_date = tenure_as_of()
),

scores as (
    select customer_id, churn_probability_90d, top_factors from int_churn_scores
),

joined as (
    select
        health.customer_id,
        health.segment,
        health.mrr,
        health.health_score,
        scores.churn_probability_90d,
        scores.top_factors
    from health
    left join scores
        on scores.customer_id = health.customer_id
),

final as (
    select
        tenure_as_of() as as_of,
        customer_id,
        segment,
        mrr,
        health_score,
        churn_probability_90d,
        case
            when churn_probability_90d is not null
                then cast(ntile(10) over (
                    partition by churn_probability_90d is null
                    order by churn_probability_90d desc, customer_id
                ) as bigint)
        end as risk_decile,
        top_factors
    from joined
)

select as_of, customer_id, segment, mrr, health_score, churn_probability_90d, risk_decile, top_factors
from final
