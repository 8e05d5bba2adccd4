-- retention_kpis_monthly: logo retention, churn, NPS, CSAT and MRR per month.
-- grain: one row per covered month (METRICS.md §3). Active at m means
-- active(c, L(m)); S, E, N and lost compare the month with the month before.
-- Surveys count every response with local date in the month.
-- Only the months from `tenure_rebuild_from()` on are computed.
-- incremental: month
-- column customers_start: Customers active at the month before (S); active means MRR > 0 or a succeeded payment in the trailing 90 days.
-- column customers_end: Customers active at the cutoff of the month (E).
-- column gained_customers: Customers active at the month but not at the month before (N, new or returning).
-- column lost_customers: Customers active at the month before but not at the month.
-- column crr: Customer retention rate, percent, (customers_end - gained_customers) / customers_start * 100; NULL when customers_start is 0.
-- column churn_rate: Logo churn rate in percent (0..100), lost_customers / customers_start * 100; NULL when customers_start is 0.
-- column nps: Net promoter score of the month's NPS responses, % promoters (9-10) - % detractors (0-6), -100..100; NULL when there are none.
-- column nps_responses: Number of survey.nps responses with local date in the month.
-- column csat_pct: Percent (0..100) of the month's CSAT responses scoring 4 or 5; NULL when csat_responses is 0.
-- column csat_avg: Mean score of the month's CSAT responses; NULL when csat_responses is 0.
-- column csat_responses: Number of survey.csat responses with local date in the month.
-- column mrr: Total MRR of all customers at the cutoff of the month, exact decimal in the reporting currency.
-- column paying_customers: Customers with MRR > 0 at the cutoff of the month.
-- column arpa: Average revenue per account, mrr / paying_customers, in the reporting currency; NULL when paying_customers is 0.
-- column month: First day of the covered month (local date in the reporting timezone).
-- column is_complete: True unless this is the month containing the as-of date D and D is not its last day.
with months as (
    select month, is_complete from int_months
    where month >= tenure_rebuild_from()
),

customer_months as (
    select month, customer_id, mrr, is_active, was_active from int_customer_months
    where month >= tenure_rebuild_from()
),

surveys as (
    select event_type, score, cast(date_trunc('month', local_date) as date) as month
    from stg_survey_payment_events
    -- the date first: a batch of kept rows wholly before it is dropped
    -- without its event types being compared
    where local_date >= tenure_rebuild_from()
      and event_type in ('survey.nps', 'survey.csat')
),

activity as (
    select
        month,
        count(case when was_active then 1 end) as customers_start,
        count(case when is_active then 1 end) as customers_end,
        count(case when is_active and not was_active then 1 end) as gained_customers,
        count(case when was_active and not is_active then 1 end) as lost_customers,
        sum(mrr) as mrr,
        count(case when mrr > 0 then 1 end) as paying_customers
    from customer_months
    group by month
),

nps as (
    select
        month,
        count(*) as nps_responses,
        count(case when score >= 9 then 1 end) as promoters,
        count(case when score <= 6 then 1 end) as detractors
    from surveys
    where event_type = 'survey.nps'
    group by month
),

csat as (
    select
        month,
        count(*) as csat_responses,
        count(case when score >= 4 then 1 end) as satisfied,
        avg(cast(score as double)) as csat_avg
    from surveys
    where event_type = 'survey.csat'
    group by month
),

final as (
    select
        months.month,
        cast(coalesce(activity.customers_start, 0) as bigint) as customers_start,
        cast(coalesce(activity.customers_end, 0) as bigint) as customers_end,
        cast(coalesce(activity.gained_customers, 0) as bigint) as gained_customers,
        cast(coalesce(activity.lost_customers, 0) as bigint) as lost_customers,
        safe_divide(activity.customers_end - activity.gained_customers, activity.customers_start) * 100 as crr,
        safe_divide(activity.lost_customers, activity.customers_start) * 100 as churn_rate,
        safe_divide(nps.promoters - nps.detractors, nps.nps_responses) * 100 as nps,
        cast(coalesce(nps.nps_responses, 0) as bigint) as nps_responses,
        safe_divide(csat.satisfied, csat.csat_responses) * 100 as csat_pct,
        csat.csat_avg,
        cast(coalesce(csat.csat_responses, 0) as bigint) as csat_responses,
        cast(coalesce(activity.mrr, 0) as decimal(38, 4)) as mrr,
        cast(coalesce(activity.paying_customers, 0) as bigint) as paying_customers,
        safe_divide(activity.mrr, activity.paying_customers) as arpa,
        months.is_complete
    from months
    left join activity
        on activity.month = months.month
    left join nps
        on nps.month = months.month
    left join csat
        on csat.month = months.month
)

select
    customers_start, customers_end, gained_customers, lost_customers, crr, churn_rate,
    nps, nps_responses, csat_pct, csat_avg, csat_responses, mrr, paying_customers, arpa,
    month, is_complete
from final
order by month
