-- check: kpi_summary, rule "always exactly one row" (METRICS.md §10.6).
select count(*) as rows_in_table
from kpi_summary
having count(*) <> 1
