-- health_weights_proposed: health score weights learned from the customers' own churn.
-- grain: one row per health component (METRICS.md §13). A logistic regression on
-- the seven component scores alone (a missing component is the training mean)
-- over the training observations (d + 90 <= D - 90); a component whose higher
-- score lowers churn gets weight in proportion to that effect per point, the
-- others 0, normalised to sum to 1. The AUCs are the health score's on the
-- test observations under the configured and the proposed weights (missing
-- components dropped and the weights renormalised, as in §7). NULL proposals
-- when no model could be fit.
-- kind: health_weights
-- column component: usage, breadth, trend, sentiment, support, billing or email.
-- column current_weight: The configured weight (metrics.health.weights), normalised to sum to 1.
-- column proposed_weight: The learned weight, non-negative, summing to 1 over the components; NULL without a model.
-- column auc_current: Test-set AUC of the health score under the configured weights (repeated on every row).
-- column auc_proposed: Test-set AUC of the health score under the proposed weights (repeated on every row).
select
    customer_id,
    snapshot_date,
    churned_90d,
    usage_score,
    breadth_score,
    trend_score,
    case when sentiment_missing = 1 then null else sentiment_score end as sentiment_score,
    support_score,
    billing_score,
    case when email_missing = 1 then null else email_score end as email_score
from int_churn_observations
where churned_90d is not null
