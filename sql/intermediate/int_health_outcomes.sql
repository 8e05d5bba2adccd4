-- int_health_outcomes: the observations of the health backtest.
-- grain: one row per customer scored at a snapshot date d with d + 90 <= D
-- (METRICS.md §8, §10.6): its band, its score rounded to 9 decimals (as the
-- AUC compares them) and `churned_90d` = not active(c, d + 90). A row depends
-- only on the score at d and the customer's state at `outcome_date` = d + 90,
-- so an incremental run computes the outcomes dated from
-- `tenure_rebuild_from()` on and keeps the earlier ones.
-- incremental: outcome_date
with health as (
    select snapshot_date, customer_id, health_score, band
    from int_health_scores
    where snapshot_date + 90 >= tenure_rebuild_from()
      and snapshot_date + 90 <= tenure_as_of()
),

customer_states as (
    select customer_id, cutoff_date, is_active
    from int_customer_states
    where cutoff_date >= tenure_rebuild_from()
),

final as (
    select
        health.snapshot_date,
        customer_states.cutoff_date as outcome_date,
        health.customer_id,
        health.band,
        round(health.health_score, 9) as health_score,
        not customer_states.is_active as churned_90d
    from health
    inner join customer_states
        on customer_states.customer_id = health.customer_id
       and customer_states.cutoff_date = health.snapshot_date + 90
)

select snapshot_date, outcome_date, customer_id, band, health_score, churned_90d
from final
