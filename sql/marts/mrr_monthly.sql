-- mrr_monthly: each customer's MRR and its movement, month by month.
-- grain: one row per customer and covered month where prev_mrr > 0 or mrr > 0
-- (METRICS.md §1, table `mrr_monthly`). `segment` is the segment at the cutoff of
-- the month; `prev_mrr` is MRR(c, m-1), 0 before the first covered month.
-- Only the months from `tenure_rebuild_from()` on are computed.
-- incremental: month
-- column month: First day of the covered month (local date in the reporting timezone).
-- column customer_id: The customer.
-- column segment: The customer's segment at the cutoff of the month ('unknown' if none was set).
-- column mrr: The customer's MRR at the cutoff of the month (cur), exact decimal in the reporting currency.
-- column prev_mrr: The customer's MRR a month earlier (prev), 0 before the first covered month; exact decimal in the reporting currency.
-- column movement: MRR movement in the month, new, reactivation, expansion, contraction, churn or unchanged.
-- column movement_amount: Movement size, cur (new, reactivation), cur - prev, prev - cur, prev (churn), 0 (unchanged); exact decimal money.
with customer_months as (
    select month, customer_id, segment, mrr, prev_mrr, had_mrr_before
    from int_customer_months
    where month >= tenure_rebuild_from()
),

moving as (
    select month, customer_id, segment, mrr, prev_mrr, had_mrr_before
    from customer_months
    where prev_mrr > 0 or mrr > 0
),

classified as (
    select
        month,
        customer_id,
        segment,
        mrr,
        prev_mrr,
        case
            when prev_mrr = 0 and mrr > 0 and not had_mrr_before then 'new'
            when prev_mrr = 0 and mrr > 0 then 'reactivation'
            when prev_mrr > 0 and mrr > prev_mrr then 'expansion'
            when prev_mrr > 0 and mrr > 0 and mrr < prev_mrr then 'contraction'
            when prev_mrr > 0 and mrr = 0 then 'churn'
            else 'unchanged'
        end as movement
    from moving
),

final as (
    select
        month,
        customer_id,
        segment,
        mrr,
        prev_mrr,
        movement,
        cast(
            case movement
                when 'new' then mrr
                when 'reactivation' then mrr
                when 'expansion' then mrr - prev_mrr
                when 'contraction' then prev_mrr - mrr
                when 'churn' then prev_mrr
                else 0
            end as decimal(38, 4)
        ) as movement_amount
    from classified
)

select month, customer_id, segment, mrr, prev_mrr, movement, movement_amount
from final
order by month, customer_id
