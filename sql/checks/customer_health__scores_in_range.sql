-- check: customer_health, rules "health and component scores lie in 0..100"
-- and "(snapshot_date, customer_id) is unique" (METRICS.md §7).
select snapshot_date, customer_id, health_score, 'score outside 0..100' as problem
from customer_health
where health_score is null
   or health_score < 0 or health_score > 100
   or usage_score < 0 or usage_score > 100
   or breadth_score < 0 or breadth_score > 100
   or trend_score < 0 or trend_score > 100
   or sentiment_score < 0 or sentiment_score > 100
   or support_score < 0 or support_score > 100
   or billing_score < 0 or billing_score > 100
   or email_score < 0 or email_score > 100
union all
select snapshot_date, customer_id, null as health_score, 'duplicate key' as problem
from customer_health
group by snapshot_date, customer_id
having count(*) > 1
