-- check: at_risk_customers, rule "one row per customer, risk_rank 1..n without gaps" (METRICS.md §7).
with ranked as (
    select count(*) as n, count(distinct customer_id) as customers,
           count(distinct risk_rank) as ranks, min(risk_rank) as lo, max(risk_rank) as hi
    from at_risk_customers
)

select * from ranked
where n <> customers or n <> ranks or (n > 0 and (lo <> 1 or hi <> n))
