-- check: finance_kpis_monthly, rule "the same rows as mrr_bridge_monthly, and
-- net_new_mrr = end_mrr - start_mrr" (METRICS.md §11). Returns the rows of
-- either table without a match, or whose net new MRR does not reconcile.
select coalesce(b.month, f.month) as month, coalesce(b.segment, f.segment) as segment,
       b.end_mrr - b.start_mrr as bridge_net_new_mrr, f.net_new_mrr
from mrr_bridge_monthly b
full outer join finance_kpis_monthly f
    on f.month = b.month and f.segment = b.segment
where b.month is null or f.month is null
   or f.net_new_mrr is null or f.net_new_mrr <> b.end_mrr - b.start_mrr
