-- kpi_summary: the headline KPIs as of D.
-- grain: exactly one row, even with no covered month (METRICS.md §5, §10.6,
-- §10.8, §10.9). Payments are the `payment.succeeded` events of the trailing
-- 365 days ending at D (zero amounts included, refunds ignored); surveys those of
-- the trailing 90 days.
-- column as_of: The as-of date D (local date in the reporting timezone).
-- column active_customers: Customers active at D (MRR > 0 or a succeeded payment in the trailing 90 days).
-- column mrr: Total MRR at D, exact decimal in the reporting currency.
-- column arr: Annual recurring revenue, 12 * mrr, exact decimal in the reporting currency.
-- column paying_customers: Customers with MRR > 0 at D.
-- column arpa: Average revenue per account, mrr / paying_customers, in the reporting currency; NULL when paying_customers is 0.
-- column ndr_12m: Trailing 12-month net dollar retention fraction, from the 'all' row of ndr_trailing_12m for the month of D; NULL if none.
-- column grr_12m: Trailing 12-month gross dollar retention fraction, from the 'all' row of ndr_trailing_12m for the month of D; NULL if none.
-- column annual_logo_churn: Fraction (0..1), 1 - product of (1 - churn_rate / 100) over the 12 latest complete months with one; NULL if none.
-- column customer_lifespan_years: Customer lifespan in years, min(10, 1 / annual_logo_churn), 10 when that is 0; NULL when it is NULL.
-- column avg_purchase_value: Mean amount of succeeded payments in the trailing 365 days (zeros included, refunds ignored); NULL if there are none.
-- column purchase_frequency: Succeeded payments in the trailing 365 days per distinct paying customer; NULL when there are none.
-- column repeat_purchase_rate: Percent (0..100) of customers paying in the trailing 365 days who paid 2 or more times; NULL when there are none.
-- column clv: Customer lifetime value, avg_purchase_value * purchase_frequency * customer_lifespan_years; NULL when any factor is NULL.
-- column nps_90d: NPS of the responses in the trailing 90 days, % promoters (9-10) - % detractors (0-6), -100..100; NULL when there are none.
-- column csat_pct_90d: Percent (0..100) of the CSAT responses in the trailing 90 days scoring 4 or 5; NULL when there are none.
with customer_states as (
    select customer_id, cutoff_date, mrr, is_active from int_customer_states
),

ndr as (
    select month, segment, ndr_12m, grr_12m from ndr_trailing_12m
),

retention as (
    select month, churn_rate, is_complete from retention_kpis_monthly
),

account_events as (
    select customer_id, event_type, amount, score, local_date
    from stg_survey_payment_events
    -- the widest window read below (365 days) first: a batch of older rows is
    -- dropped without its event types being compared
    where local_date > tenure_as_of() - 365
      and event_type in ('payment.succeeded', 'survey.nps', 'survey.csat')
),

position as (
    select
        count(case when customer_states.is_active then 1 end) as active_customers,
        sum(customer_states.mrr) as mrr,
        count(case when customer_states.mrr > 0 then 1 end) as paying_customers
    from customer_states
    where customer_states.cutoff_date = tenure_as_of()
),

ndr_at_as_of as (
    -- the 'all' row of month(D); an aggregate, so one row (NULLs) when there is none
    select max(ndr.ndr_12m) as ndr_12m, max(ndr.grr_12m) as grr_12m
    from ndr
    where ndr.month = cast(date_trunc('month', tenure_as_of()) as date)
      and ndr.segment = 'all'
),

recent_complete_months as (
    select
        churn_rate,
        row_number() over (order by month desc) as recency_rank
    from retention
    where is_complete
),

annual_churn as (
    -- 1 - product of (1 - churn_rate / 100), as exp(sum(ln)); ln(0) = -inf gives 0.
    select
        case
            when count(*) > 0 then 1 - exp(sum(ln(1 - churn_rate / 100)))
        end as annual_logo_churn
    from recent_complete_months
    where recency_rank <= 12
      and churn_rate is not null
),

lifespan as (
    select
        annual_logo_churn,
        case
            when annual_logo_churn is null then null
            when annual_logo_churn = 0 then 10.0
            else least(10.0, 1 / annual_logo_churn)
        end as customer_lifespan_years
    from annual_churn
),

customer_payments as (
    select
        account_events.customer_id,
        count(*) as payments,
        sum(account_events.amount) as amount
    from account_events
    where account_events.local_date > tenure_as_of() - 365
      and account_events.event_type = 'payment.succeeded'
    group by account_events.customer_id
),

purchases as (
    select
        safe_divide(sum(amount), sum(payments)) as avg_purchase_value,
        safe_divide(sum(payments), count(*)) as purchase_frequency,
        safe_divide(count(case when payments >= 2 then 1 end), count(*)) * 100 as repeat_purchase_rate
    from customer_payments
),

surveys_90d as (
    select
        safe_divide(
            count(case when account_events.event_type = 'survey.nps' and account_events.score >= 9 then 1 end)
            - count(case when account_events.event_type = 'survey.nps' and account_events.score <= 6 then 1 end),
            count(case when account_events.event_type = 'survey.nps' then 1 end)
        ) * 100 as nps_90d,
        safe_divide(
            count(case when account_events.event_type = 'survey.csat' and account_events.score >= 4 then 1 end),
            count(case when account_events.event_type = 'survey.csat' then 1 end)
        ) * 100 as csat_pct_90d
    from account_events
    where account_events.local_date > tenure_as_of() - 90
      and account_events.event_type in ('survey.nps', 'survey.csat')
),

final as (
    select
        tenure_as_of() as as_of,
        cast(position.active_customers as bigint) as active_customers,
        cast(coalesce(position.mrr, 0) as decimal(38, 4)) as mrr,
        cast(12 * coalesce(position.mrr, 0) as decimal(38, 4)) as arr,
        cast(position.paying_customers as bigint) as paying_customers,
        safe_divide(position.mrr, position.paying_customers) as arpa,
        ndr_at_as_of.ndr_12m,
        ndr_at_as_of.grr_12m,
        lifespan.annual_logo_churn,
        lifespan.customer_lifespan_years,
        purchases.avg_purchase_value,
        purchases.purchase_frequency,
        purchases.repeat_purchase_rate,
        purchases.avg_purchase_value * purchases.purchase_frequency * lifespan.customer_lifespan_years as clv,
        surveys_90d.nps_90d,
        surveys_90d.csat_pct_90d
    from position
    cross join ndr_at_as_of
    cross join lifespan
    cross join purchases
    cross join surveys_90d
)

select
    as_of, active_customers, mrr, arr, paying_customers, arpa, ndr_12m, grr_12m,
    annual_logo_churn, customer_lifespan_years, avg_purchase_value, purchase_frequency,
    repeat_purchase_rate, clv, nps_90d, csat_pct_90d
from final
