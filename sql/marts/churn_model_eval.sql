-- churn_model_eval: does the learned churn model beat the health score?
-- grain: one row per model ('logistic_regression') plus 'health_score' (METRICS.md §13).
-- Observations are int_churn_observations' rows with a known label; those
-- with d + 90 <= D - 90 train the model, the later ones test it. The health
-- score is scored by 100 - health_score on the same test rows. With fewer
-- than 200 training observations or a single class no model is fit: its row
-- has NULL figures and `status` says why.
-- kind: churn_model_eval
-- column model: 'logistic_regression' (L2-regularised, on standardised features) or 'health_score' (the rule-based score).
-- column train_observations: Observations with d + 90 <= D - 90 (their labels were known 90 days before D).
-- column test_observations: Later observations with a known label (d + 90 <= D), held out from training.
-- column test_churn_rate: Fraction (0..1) of the test observations that churned within 90 days; NULL without any.
-- column auc: On the test set, P(a churned observation is scored riskier than a retained one), ties count half.
-- column log_loss: Mean log-loss of the predicted probabilities on the test set; NULL for health_score.
-- column brier: Mean squared error of the predicted probabilities on the test set; NULL for health_score.
-- column trained_through: The last snapshot date in the training set; NULL for health_score.
-- column status: 'fitted', 'not_converged', 'too_few_observations', 'single_class', 'no_fit', or 'baseline' for health_score.
select *
from int_churn_observations
where churned_90d is not null
