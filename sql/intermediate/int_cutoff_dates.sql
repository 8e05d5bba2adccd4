-- int_cutoff_dates: the local dates at whose end customer state is evaluated.
-- grain: one row per date: every month cutoff L(m) (METRICS.md §0; also the
-- health snapshot dates of §7) and every backtest horizon d + 90 <= D of a
-- snapshot date d (§8, §10.12).
with months as (
    select cutoff_date from int_months
),

backtest_horizons as (
    select cast(months.cutoff_date + 90 as date) as cutoff_date
    from months
    where months.cutoff_date + 90 <= tenure_as_of()
),

final as (
    select cutoff_date from months
    union
    select cutoff_date from backtest_horizons
)

select cutoff_date from final
