-- check: health_weights_proposed, rules "seven components, weights not
-- negative, each set summing to 1" (METRICS.md §13).
select count(*) as components, 'not seven components' as problem
from health_weights_proposed
having count(*) <> 7
union all
select count(*) as components, 'weights negative or not summing to 1' as problem
from health_weights_proposed
having abs(sum(current_weight) - 1) > 1e-9
    or (count(proposed_weight) > 0 and abs(sum(proposed_weight) - 1) > 1e-9)
    or min(current_weight) < 0
    or min(proposed_weight) < 0
