-- check: cohort_retention, rule "(cohort_month, month) is unique and not null" (METRICS.md §4).
select cohort_month, month, count(*) as rows_for_key
from cohort_retention
group by cohort_month, month
having count(*) > 1 or cohort_month is null or month is null
