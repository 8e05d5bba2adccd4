-- check: retention_kpis_monthly, rule "crr + churn_rate = 100 where defined",
-- and one row per month (METRICS.md §3).
select month, crr, churn_rate
from retention_kpis_monthly
where crr is not null and churn_rate is not null and abs(crr + churn_rate - 100) > 1e-9
union all
select month, null as crr, null as churn_rate
from retention_kpis_monthly
group by month
having count(*) > 1
