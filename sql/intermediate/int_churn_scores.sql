-- int_churn_scores: the learned churn probability of each customer scored at D.
-- grain: one row per customer scored in customer_health at D (METRICS.md §13).
-- The model is refit on every observation with a known label (d + 90 <= D);
-- `top_factors` are the two features that raise the customer's log-odds most
-- against the average customer. NULL when no model could be fit.
-- kind: churn_scores
select *
from int_churn_observations
where churned_90d is not null
   or snapshot_date = tenure_as_of()
