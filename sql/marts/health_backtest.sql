-- health_backtest: does the health band predict churn 90 days later?
-- grain: one row per band ('green', 'yellow', 'red') plus 'all', always four rows
-- (METRICS.md §8, §10.6, §10.12). Observations are the customers scored at a
-- snapshot date d with d + 90 <= D; `churned_90d` = not active(c, d + 90).
-- `auc` (only on 'all'): P(churned score < retained score), ties count one
-- half, scores compared rounded to 9 decimals; NULL when a class is empty.
-- The observations are int_health_outcomes'.
-- column band: Health band at the snapshot date, 'green', 'yellow' or 'red', or 'all' for every observation.
-- column observations: Number of customers scored at a snapshot date d with d + 90 <= D (one per customer and d).
-- column churned: Observations not active at d + 90 (no MRR then and no succeeded payment in the 90 days before).
-- column churn_rate: Fraction (0..1) of the observations that churned, churned / observations; NULL when observations is 0.
-- column auc: On the 'all' row only, P(a churned observation scores below a retained one), ties count half; NULL when a class is empty.
with observations as (
    select band, health_score, churned_90d from int_health_outcomes
),

bands as (
    select band, band_order
    from (values ('green', 1), ('yellow', 2), ('red', 3), ('all', 4)) as bands (band, band_order)
),

attributed as (
    select band, churned_90d from observations
    union all
    select 'all' as band, churned_90d from observations
),

band_counts as (
    select
        band,
        count(*) as observations,
        count(case when churned_90d then 1 end) as churned
    from attributed
    group by band
),

score_counts as (
    select
        health_score,
        count(case when churned_90d then 1 end) as churned,
        count(case when not churned_90d then 1 end) as retained
    from observations
    group by health_score
),

score_pairs as (
    -- per churned observation: retained ones scoring higher (1) or equal (1/2), times 2
    select
        churned,
        retained,
        churned * (
            2 * coalesce(
                sum(retained) over (order by health_score desc rows between unbounded preceding and 1 preceding),
                0
            )
            + retained
        ) as doubled_wins
    from score_counts
),

auc as (
    select
        safe_divide(sum(doubled_wins), 2.0 * cast(sum(churned) as double) * cast(sum(retained) as double)) as auc
    from score_pairs
),

final as (
    select
        bands.band,
        bands.band_order,
        cast(coalesce(band_counts.observations, 0) as bigint) as observations,
        cast(coalesce(band_counts.churned, 0) as bigint) as churned,
        safe_divide(band_counts.churned, band_counts.observations) as churn_rate,
        case when bands.band = 'all' then auc.auc end as auc
    from bands
    cross join auc
    left join band_counts
        on band_counts.band = bands.band
)

select band, observations, churned, churn_rate, auc
from final
order by band_order
