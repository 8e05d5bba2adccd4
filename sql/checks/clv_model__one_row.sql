-- check: clv_model, rule "always exactly one row, and a fit's parameters are
-- positive" (METRICS.md §14).
select count(*) as rows_in_table, 'not one row' as problem
from clv_model
having count(*) <> 1
union all
select 1 as rows_in_table, 'a parameter is not positive' as problem
from clv_model
where r <= 0 or alpha <= 0 or a <= 0 or b <= 0 or p <= 0 or q <= 0 or gamma <= 0
