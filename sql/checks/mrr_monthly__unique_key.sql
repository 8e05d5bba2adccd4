-- check: mrr_monthly, rule "(month, customer_id) is unique and not null" (METRICS.md §1).
select month, customer_id, count(*) as rows_for_key
from mrr_monthly
group by month, customer_id
having count(*) > 1 or month is null or customer_id is null
