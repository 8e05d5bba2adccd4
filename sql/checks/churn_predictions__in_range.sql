-- check: churn_predictions, rules "one row per customer, probability in 0..1,
-- deciles 1..10 ordered by probability" (METRICS.md §13).
select customer_id, 'out of range' as problem
from churn_predictions
where churn_probability_90d < 0 or churn_probability_90d > 1
   or risk_decile < 1 or risk_decile > 10
   or (churn_probability_90d is null) <> (risk_decile is null)
union all
select customer_id, 'duplicate customer' as problem
from churn_predictions
group by customer_id
having count(*) > 1
union all
select cast(deciles.risk_decile as varchar) as customer_id, 'a riskier decile has a lower probability' as problem
from (
    select risk_decile, min(churn_probability_90d) as lowest, max(churn_probability_90d) as highest
    from churn_predictions
    where risk_decile is not null
    group by risk_decile
) as deciles
inner join (
    select risk_decile, max(churn_probability_90d) as highest
    from churn_predictions
    where risk_decile is not null
    group by risk_decile
) as safer
    on safer.risk_decile = deciles.risk_decile + 1
   and safer.highest > deciles.lowest
