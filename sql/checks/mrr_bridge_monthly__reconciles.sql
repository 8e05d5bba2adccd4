-- check: mrr_bridge_monthly, rule "the bridge reconciles exactly in every row"
-- (METRICS.md §1): end = start + new + reactivation + expansion - contraction - churned.
-- Returns the rows that break it; any row fails the run before publishing.
select month, segment, start_mrr, new_mrr, reactivation_mrr, expansion_mrr,
       contraction_mrr, churned_mrr, end_mrr
from mrr_bridge_monthly
where end_mrr <> start_mrr + new_mrr + reactivation_mrr + expansion_mrr
                 - contraction_mrr - churned_mrr
   or start_mrr is null or end_mrr is null
