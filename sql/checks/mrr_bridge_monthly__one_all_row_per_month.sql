-- check: mrr_bridge_monthly, rule "(month, segment) is unique and every month
-- has an 'all' row" (METRICS.md §10.6).
select month, segment, count(*) as rows_for_key
from mrr_bridge_monthly
group by month, segment
having count(*) > 1 or month is null or segment is null
union all
select m.month, 'all' as segment, 0 as rows_for_key
from (select distinct month from mrr_bridge_monthly) m
where not exists (select 1 from mrr_bridge_monthly b where b.month = m.month and b.segment = 'all')
