-- check: customer_clv, rules "one row per customer, p_alive in 0..1, expected
-- purchases and value not negative, clv their product" (METRICS.md §14).
select customer_id, 'out of range' as problem
from customer_clv
where p_alive < 0 or p_alive > 1
   or expected_purchases < 0
   or expected_avg_value < 0
   or frequency < 0 or recency < 0 or recency > t
   or abs(clv - expected_purchases * expected_avg_value) > 1e-9 * greatest(abs(clv), 1)
union all
select customer_id, 'duplicate customer' as problem
from customer_clv
group by customer_id
having count(*) > 1
