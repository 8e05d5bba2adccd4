-- check: rfm_segments, rule "one row per customer, scores 1..5" (METRICS.md §6).
select customer_id, count(*) as rows_for_key, min(r_score) as r_score, min(f_score) as f_score, min(m_score) as m_score
from rfm_segments
group by customer_id
having count(*) > 1 or customer_id is null
    or min(r_score) < 1 or max(r_score) > 5
    or min(f_score) < 1 or max(f_score) > 5
    or min(m_score) < 1 or max(m_score) > 5
