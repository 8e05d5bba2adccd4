-- check: churn_model_eval, rule "one row for the model and one for the
-- health score, with figures in range" (METRICS.md §13).
select count(*) as rows_in_table, 'not the two rows' as problem
from churn_model_eval
having count(*) <> 2
    or count(case when model = 'health_score' then 1 end) <> 1
union all
select 1 as rows_in_table, 'a figure out of range' as problem
from churn_model_eval
where auc < 0 or auc > 1
   or test_churn_rate < 0 or test_churn_rate > 1
   or brier < 0 or brier > 1
   or log_loss < 0
