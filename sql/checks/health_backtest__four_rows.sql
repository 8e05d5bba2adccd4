-- check: health_backtest, rule "always the rows green, yellow, red and all" (METRICS.md §10.6).
select count(*) as rows_in_table
from health_backtest
where band in ('green', 'yellow', 'red', 'all')
having count(*) <> 4
