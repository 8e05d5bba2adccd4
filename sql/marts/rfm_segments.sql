-- rfm_segments: recency, frequency and monetary scores and segments as of D.
-- grain: one row per customer with at least one `payment.succeeded` with local
-- date <= D (METRICS.md §6, §10.9, §10.10). The window is the trailing 365 days
-- ending at D; `monetary` nets the refunds dated in it, whichever payment they
-- refund. NTILE ties break on customer_id (byte order).
-- column recency_days: Days from the customer's latest succeeded payment (local date <= D) to D.
-- column frequency: Number of succeeded payments in the trailing 365 days ending at D.
-- column monetary: Succeeded payments minus refunds dated in the trailing 365 days, exact decimal in the reporting currency; may be 0 or negative.
-- column r_score: Recency score 1..5, NTILE(5) by recency_days descending then customer_id (5 = most recent).
-- column f_score: Frequency score 1..5, NTILE(5) by frequency then customer_id (5 = most frequent).
-- column m_score: Monetary score 1..5, NTILE(5) by monetary then customer_id (5 = highest).
-- column segment: RFM segment from r_score and f_score, e.g. champions, loyal_customers, at_risk, hibernating (METRICS.md section 6).
-- column lifecycle_group: Group of the segment, one of advocate, nurture, at_risk or dormant.
-- column as_of: The as-of date D (local date in the reporting timezone).
-- column customer_id: The customer.
with payments as (
    select customer_id, event_type, amount, local_date
    from stg_billing_events
    where event_type in ('payment.succeeded', 'payment.refunded')
),

payers as (
    select
        payments.customer_id,
        tenure_as_of() as as_of,
        max(case when payments.event_type = 'payment.succeeded' then payments.local_date end)
            as last_payment_date,
        count(
            case when payments.event_type = 'payment.succeeded'
                  and payments.local_date > tenure_as_of() - 365 then 1 end
        ) as frequency,
        coalesce(
            sum(
                case when payments.event_type = 'payment.succeeded'
                      and payments.local_date > tenure_as_of() - 365 then payments.amount end
            ),
            0
        )
        - coalesce(
            sum(
                case when payments.event_type = 'payment.refunded'
                      and payments.local_date > tenure_as_of() - 365 then payments.amount end
            ),
            0
        ) as monetary
    from payments
    group by payments.customer_id
),

measured as (
    select
        as_of,
        customer_id,
        cast(as_of - last_payment_date as bigint) as recency_days,
        cast(frequency as bigint) as frequency,
        cast(monetary as decimal(38, 4)) as monetary
    from payers
    where last_payment_date is not null
),

scored as (
    select
        as_of,
        customer_id,
        recency_days,
        frequency,
        monetary,
        cast(ntile(5) over (order by recency_days desc, customer_id) as bigint) as r_score,
        cast(ntile(5) over (order by frequency, customer_id) as bigint) as f_score,
        cast(ntile(5) over (order by monetary, customer_id) as bigint) as m_score
    from measured
),

segmented as (
    select
        as_of,
        customer_id,
        recency_days,
        frequency,
        monetary,
        r_score,
        f_score,
        m_score,
        case
            when r_score between 1 and 2 and f_score between 1 and 2 then 'hibernating'
            when r_score between 1 and 2 and f_score between 3 and 4 then 'at_risk'
            when r_score between 1 and 2 and f_score = 5 then 'cant_lose_them'
            when r_score = 3 and f_score between 1 and 2 then 'about_to_sleep'
            when r_score = 3 and f_score = 3 then 'need_attention'
            when r_score between 3 and 4 and f_score between 4 and 5 then 'loyal_customers'
            when r_score = 4 and f_score = 1 then 'promising'
            when r_score = 5 and f_score = 1 then 'new_customers'
            when r_score between 4 and 5 and f_score between 2 and 3 then 'potential_loyalists'
            when r_score = 5 and f_score between 4 and 5 then 'champions'
        end as segment
    from scored
),

final as (
    select
        as_of,
        customer_id,
        recency_days,
        frequency,
        monetary,
        r_score,
        f_score,
        m_score,
        segment,
        case
            when segment in ('champions', 'loyal_customers') then 'advocate'
            when segment in ('potential_loyalists', 'promising', 'new_customers') then 'nurture'
            when segment in ('at_risk', 'cant_lose_them', 'about_to_sleep', 'need_attention') then 'at_risk'
            when segment = 'hibernating' then 'dormant'
        end as lifecycle_group
    from segmented
)

select
    recency_days, frequency, monetary, r_score, f_score, m_score, segment, lifecycle_group,
    as_of, customer_id
from final
order by customer_id
