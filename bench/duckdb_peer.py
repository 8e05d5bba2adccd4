#!/usr/bin/env python3
"""DuckDB peer of `tenure bench`: the same job on the same raw files, in DuckDB.

Reads the raw objects under --raw as EVENTS.md describes them (JSON Lines
`.jsonl`/`.ndjson`/`.json`, plain or `.gz`/`.zst`, and CSV with a header),
validates every row with the main reject rules, de-duplicates by event_id
(first by object path, then row number) into Parquet, then builds
`mrr_monthly`, `mrr_bridge_monthly`, `ndr_trailing_12m` and `customer_health`
per METRICS.md with DuckDB SQL and writes them as Parquet. It prints its own
timings per step, its counts and its peak RSS as one JSON line on stdout.

Steps (as `tenure bench --peer` compares them with tenure's run report):
  ingest            discover objects, split lines, parse JSON/CSV, validate,
                    de-duplicate, write events.parquet and rejects.parquet
  customer_months   the customer-month spine: MRR per subscription state
                    (ASOF joins), segment, activity, previous-month MRR
  mrr_monthly, mrr_bridge_monthly, ndr_trailing_12m
  customer_health   its windowed inputs (features, surveys) and the score
  write             the four marts as Parquet

It is written the way a DuckDB user would write the job: DuckDB reads, parses
and validates the text (read_text, from_json, read_csv), the SQL follows the
definitions of METRICS.md, intermediate results are temp tables, `SET threads`
is the number of cores and insertion order is not preserved (DuckDB's advice
for large loads). On the benchmark data it accepts, rejects (by reason) and
drops as duplicates exactly the rows tenure does, and its four marts equal
tenure's (checked on the `tenure demo` data).

Known differences from tenure (rare edge cases, none changes the figures):
- Compressed JSON Lines are decompressed by Python first (DuckDB's read_text
  does not decompress); this is timed inside `ingest`.
- Parquet raw objects are not read (the benchmark generator writes none).
- With duplicate keys in one JSON object DuckDB's parser keeps the first value,
  EVENTS.md says the last wins; `NaN`/`Infinity` tokens are caught only in the
  fields the contract reads.
- JSON numbers are validated through the shortest decimal text of their value
  (`2.5e1` is `25.0`); money beyond 34 integer digits is not special-cased.
- Only the reporting timezone UTC and currency USD (tenure's defaults) and the
  default metric settings of config/tenure.toml are supported.
"""

import argparse
import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import time

import duckdb

FIELDS = [
    "event_id", "event_type", "customer_id", "occurred_at", "subscription_id", "plan", "mrr",
    "currency", "seats", "amount", "payment_id", "feature", "user_id", "quantity", "ticket_id",
    "priority", "score", "campaign_id", "name", "segment", "country", "industry", "owner",
    "reason", "comment",
]
# String fields each event family declares (EVENTS.md "Event types and their fields").
DECLARED_STRINGS = {
    "customer": ["name", "segment", "country", "industry", "owner"],
    "sub_set": ["subscription_id", "plan", "currency"],
    "sub_stop": ["subscription_id", "plan", "reason"],
    "payment": ["payment_id", "currency"],
    "usage": ["feature", "user_id"],
    "support": ["ticket_id", "priority"],
    "survey": ["comment"],
    "email": ["campaign_id"],
}
# METRICS.md defaults (config/tenure.toml).
ACTIVITY_WINDOW_DAYS = 90
WEIGHTS = {"usage": 0.25, "breadth": 0.15, "trend": 0.15, "sentiment": 0.15,
           "support": 0.10, "billing": 0.10, "email": 0.10}
TARGET_ACTIVE_DAYS = 20
TARGET_FEATURES = 5
BAND_GREEN = 70
BAND_YELLOW = 40

MARTS = ["mrr_monthly", "mrr_bridge_monthly", "ndr_trailing_12m", "customer_health"]


def sql_str(s):
    return "'" + s.replace("'", "''") + "'"


def sql_list(items):
    return "[" + ", ".join(sql_str(i) for i in items) + "]"


def discover(raw):
    """Data objects under the raw prefix in byte order of their relative path:
    (relative path, absolute path, format, compression). Segments starting with
    `_` or `.` are ignored; other extensions are skipped."""
    objects, skipped = [], []
    for dirpath, dirnames, filenames in os.walk(raw):
        dirnames[:] = [d for d in dirnames if not d.startswith(("_", "."))]
        for name in filenames:
            if name.startswith(("_", ".")):
                continue
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, raw).replace(os.sep, "/")
            lower = name.lower()
            compression = None
            for ext in (".gz", ".zst"):
                if lower.endswith(ext):
                    compression, lower = ext[1:], lower[: -len(ext)]
            if lower.endswith((".jsonl", ".ndjson", ".json")):
                objects.append((rel, full, "jsonl", compression))
            elif lower.endswith(".csv"):
                objects.append((rel, full, "csv", compression))
            else:
                skipped.append(rel)
    objects.sort(key=lambda o: o[0].encode())
    return objects, skipped


def decompress(path, compression, dest):
    if compression == "gz":
        with gzip.open(path, "rb") as src, open(dest, "wb") as dst:
            shutil.copyfileobj(src, dst)
    else:
        try:
            import zstandard  # noqa: PLC0415

            with open(path, "rb") as src, open(dest, "wb") as dst:
                zstandard.ZstdDecompressor().copy_stream(src, dst)
        except ImportError:
            with open(dest, "wb") as dst:
                subprocess.run(["zstd", "-dc", path], stdout=dst, check=True)


def field_exprs():
    """SQL for the JSON type (t_*) and text (s_*) of every field of a JSON row,
    from the JSON text of each field (j_*): its first character tells the type;
    strings are unquoted (and unescaped when they hold a backslash)."""
    cols = []
    for f in FIELDS:
        j = f"j_{f}"
        cols.append(
            f"case when {j} is null then null else case left({j}, 1) when '\"' then 'VARCHAR' "
            f"when 't' then 'BOOLEAN' when 'f' then 'BOOLEAN' when 'n' then 'NULL' when '{{' then 'OBJECT' "
            f"when '[' then 'ARRAY' else 'NUMBER' end end as t_{f}")
        cols.append(
            f"case when not prefix({j}, '\"') then {j} when contains({j}, '\\') then json_extract_string({j}, '$') "
            f"else {j}[2:-2] end as s_{f}")
    return ",\n        ".join(cols)


def ingest(con, raw, out):
    objects, skipped = discover(raw)
    tmp = os.path.join(out, "_decompressed")
    os.makedirs(tmp, exist_ok=True)
    # Every object gets its index in path order; `ord` = index * 2^32 + row
    # number orders rows as EVENTS.md's "first occurrence" does.
    json_files, csv_files = [], []  # (index, file DuckDB reads, relative path)
    for i, (rel, full, fmt, compression) in enumerate(objects):
        if fmt == "jsonl":
            if compression:
                dest = os.path.join(tmp, f"{i:06d}.jsonl")
                decompress(full, compression, dest)
                json_files.append((i, dest, rel))
            else:
                json_files.append((i, full, rel))
        else:
            csv_files.append((i, full, rel))

    # One row per non-blank line. Row numbers are the physical lines (blank
    # lines count), as EVENTS.md says.
    con.execute("create temp table object_paths (idx bigint, file varchar, path varchar)")
    con.executemany("insert into object_paths values (?, ?, ?)", [list(f) for f in json_files])
    files = sql_list([f for _, f, _ in json_files])
    con.execute(f"""
        create temp table raw_lines as
        with split as (
            select object_paths.idx, object_paths.path, string_split(content, chr(10)) as ls
            from read_text({files}) as t
            join object_paths on object_paths.file = t.filename
        ),
        numbered as (
            select idx, path, generate_subscripts(ls, 1) as row_no, unnest(ls) as line from split
        )
        select idx * 4294967296 + row_no as ord, path, row_no,
               case when row_no = 1 then ltrim(rtrim(line, chr(13)), chr(65279))
                    when suffix(line, chr(13)) then rtrim(line, chr(13))
                    else line end as line
        from numbered
        where line <> '' and (prefix(line, '{{') or trim(line, ' ' || chr(9) || chr(13)) <> '')
    """)
    # One walk over each object: every field as JSON text (from_json with a
    # struct of JSON fields), NULL where absent.
    struct = "{" + ", ".join(f'"{f}": "JSON"' for f in FIELDS) + "}"
    parts = [f"""
        select ord, path, row_no, is_object,
        {field_exprs()}
        from (
            select ord, path, row_no, js is not null as is_object,
                   {", ".join(f"js.{f}::varchar as j_{f}" for f in FIELDS)}
            from (
                select ord, path, row_no,
                       case when prefix(ltrim(line), '{{') and json_valid(line) then from_json(line, {sql_str(struct)}) end as js
                from raw_lines
            )
        )"""]

    # CSV objects: every field a column, empty cells missing; a record with a
    # different number of cells than the header is malformed (DuckDB's rejects).
    con.execute("create temp table csv_lines (ord bigint, path varchar, row_no bigint, line varchar)")
    for n, (idx, full, rel) in enumerate(csv_files):
        con.execute(f"""
            create temp table csv_{n} as
            select {idx} * 4294967296 + row_number() over () as ord, *
            from read_csv({sql_str(full)}, header = true, all_varchar = true, store_rejects = true,
                          rejects_table = 'csv_rejects_{n}', rejects_scan = 'csv_scans_{n}',
                          strict_mode = true)
        """)
        have = {r[0] for r in con.execute(f"describe csv_{n}").fetchall()} - {"ord"}
        cols = []
        for f in FIELDS:
            if f in have:
                cols.append(f"case when nullif(\"{f}\", '') is not null then 'VARCHAR' end as t_{f}")
                cols.append(f"nullif(\"{f}\", '') as s_{f}")
            else:
                cols.append(f"null::varchar as t_{f}")
                cols.append(f"null::varchar as s_{f}")
        raw_text = " || ',' || ".join(f"coalesce(\"{c}\", '')" for c in sorted(have))
        con.execute(f"""insert into csv_lines
            select ord, {sql_str(rel)}, ord - {idx} * 4294967296, {raw_text} from csv_{n}""")
        con.execute(f"""insert into csv_lines
            select distinct {idx} * 4294967296 + 2147483648 + line, {sql_str(rel)}, line - 1, trim(csv_line, chr(10) || chr(13))
            from (select distinct line, trim(csv_line, chr(10) || chr(13)) as csv_line from csv_rejects_{n})""")
        parts.append(f"""
            select ord, {sql_str(rel)} as path, ord - {idx} * 4294967296 as row_no, true as is_object, {', '.join(cols)}
            from csv_{n}""")
        # Malformed records (their `ord` sorts after the file's good rows, they
        # claim no id; DuckDB counts the header as line 1, EVENTS.md does not).
        parts.append(f"""
            select distinct {idx} * 4294967296 + 2147483648 + line as ord, {sql_str(rel)} as path, line - 1 as row_no,
                   false as is_object, {', '.join(f'null::varchar as t_{f}, null::varchar as s_{f}' for f in FIELDS)}
            from csv_rejects_{n}""")
    rows_sql = " union all ".join(parts)

    missing = lambda f: f"(t_{f} is null or t_{f} = 'NULL' or (t_{f} = 'VARCHAR' and s_{f} = ''))"
    present = lambda f: f"not {missing(f)}"
    bad_string = lambda f: f"coalesce(t_{f} in ('BOOLEAN', 'OBJECT', 'ARRAY'), false)"
    # NaN/Infinity tokens (DuckDB's parser accepts them) in the fields the contract reads.
    not_finite = lambda f: f"coalesce(t_{f} = 'NUMBER' and not isfinite(try_cast(s_{f} as double)), false)"
    family_strings = " or ".join(
        f"(family = {sql_str(fam)} and ({' or '.join(bad_string(f) for f in fs)}))"
        for fam, fs in DECLARED_STRINGS.items()
    )
    numeric = r"'^-?\d+(\.\d+)?([eE][+-]?\d+)?$'"
    money_re = r"'^-?(\d+)(\.(\d+))?$'"

    def number_ok(f, integer):
        text_ok = f"(t_{f} = 'NUMBER' or (t_{f} = 'VARCHAR' and regexp_full_match(s_{f}, {numeric})))"
        value = f"try_cast(s_{f} as double)"
        cond = f"{text_ok} and isfinite({value})"
        if integer:
            cond += f" and {value} = floor({value})"
        return f"({missing(f)} or ({cond}))"

    def money_ok(f):
        # a JSON number, or a string of digits; at most 4 fractional digits
        # once trailing zeros are dropped (JSON numbers as their decimal text)
        return (f"({missing(f)} or ((t_{f} in ('NUMBER', 'VARCHAR')) "
                f"and regexp_full_match(s_{f}, {money_re}) "
                f"and length(rtrim(coalesce(regexp_extract(s_{f}, '\\.(\\d+)$', 1), ''), '0')) <= 4))")

    nullif_ = lambda f: f"case when {missing(f)} then null else s_{f} end"
    con.execute(f"""
        create temp table classified as
        with rows as ({rows_sql}),
        typed as (
            select *,
                case
                    when s_event_type in ('customer.created', 'customer.updated') then 'customer'
                    when s_event_type in ('subscription.started', 'subscription.changed', 'subscription.resumed') then 'sub_set'
                    when s_event_type in ('subscription.paused', 'subscription.cancelled') then 'sub_stop'
                    when s_event_type in ('payment.succeeded', 'payment.failed', 'payment.refunded') then 'payment'
                    when s_event_type like 'usage.%' then 'usage'
                    when s_event_type in ('support.ticket_opened', 'support.ticket_resolved') then 'support'
                    when s_event_type in ('survey.nps', 'survey.csat') then 'survey'
                    when s_event_type in ('email.sent', 'email.opened', 'email.clicked') then 'email'
                end as family,
                regexp_extract(s_occurred_at,
                    '^(\d{{4}}-\d{{2}}-\d{{2}})[Tt ](\d{{2}}):(\d{{2}}):(\d{{2}})(\.\d+)?([Zz]|[+-]\d{{2}}:?\d{{2}})?$',
                    ['d', 'hh', 'mi', 'ss', 'frac', 'off']) as ts
            from rows
        ),
        timed as (
            select *,
                case when ts.d <> '' and ts.ss <> '60' then
                    try_cast(ts.d || ' ' || ts.hh || ':' || ts.mi || ':' || ts.ss as timestamp)
                    + to_microseconds(coalesce(try_cast(rpad(substr(ts.frac, 2, 6), 6, '0') as bigint), 0))
                    - case when ts.off in ('', 'Z', 'z') then interval 0 minute
                           else to_minutes(
                                (case when left(ts.off, 1) = '-' then -1 else 1 end)
                                * (try_cast(substr(ts.off, 2, 2) as bigint) * 60 + try_cast(right(ts.off, 2) as bigint)))
                      end
                end as occurred_utc,
                ts.off not in ('', 'Z', 'z') and try_cast(substr(ts.off, 2, 2) as int) >= 24 as bad_offset
            from typed
        ),
        judged as (
            select *,
                case
                    when not is_object
                      or {bad_string('event_id')} or {bad_string('event_type')}
                      or {bad_string('customer_id')} or {bad_string('occurred_at')}
                      or ({family_strings})
                      or {' or '.join(not_finite(f) for f in ['mrr', 'amount', 'seats', 'quantity', 'score'])}
                        then 'malformed'
                    when {missing('event_id')} or {missing('event_type')} or {missing('customer_id')} or {missing('occurred_at')}
                        then 'missing_field'
                    when family is null then 'unknown_event_type'
                    when occurred_utc is null or coalesce(bad_offset, false) then 'bad_timestamp'
                    when (family in ('sub_set', 'sub_stop') and {missing('subscription_id')})
                      or (family = 'sub_set' and {missing('mrr')})
                      or (family = 'payment' and {missing('amount')})
                      or (family = 'support' and {missing('ticket_id')})
                      or (family = 'survey' and {missing('score')})
                        then 'missing_field'
                    when (family = 'sub_set' and not ({money_ok('mrr')} and {number_ok('seats', True)}))
                      or (family = 'payment' and not {money_ok('amount')})
                      or (family = 'usage' and not {number_ok('quantity', False)})
                      or (family = 'survey' and not {number_ok('score', True)})
                        then 'bad_number'
                    when (family = 'sub_set' and try_cast(s_mrr as decimal(38, 4)) < 0)
                      or (family = 'payment' and try_cast(s_amount as decimal(38, 4)) < 0)
                        then 'negative_amount'
                    when (s_event_type = 'survey.nps' and try_cast(s_score as double) not between 0 and 10)
                      or (s_event_type = 'survey.csat' and try_cast(s_score as double) not between 1 and 5)
                        then 'score_out_of_range'
                    when family = 'support' and {present('priority')}
                      and lower(s_priority) not in ('low', 'normal', 'high', 'urgent')
                        then 'bad_priority'
                    when family in ('sub_set', 'payment') and {present('currency')} and upper(s_currency) <> 'USD'
                        then 'unsupported_currency'
                end as reject_reason
            from timed
        )
        select
            ord, reject_reason,
            s_event_id as event_id,
            s_event_type as event_type,
            s_customer_id as customer_id,
            occurred_utc as occurred_at,
            cast(occurred_utc as date) as event_date,
            case when family in ('sub_set', 'sub_stop') then {nullif_('subscription_id')} end as subscription_id,
            case when family in ('sub_set', 'sub_stop') then {nullif_('plan')} end as plan,
            case when family = 'sub_set' then try_cast({nullif_('mrr')} as decimal(38, 4)) end as mrr,
            case when family in ('sub_set', 'payment') then upper(coalesce({nullif_('currency')}, 'USD')) end as currency,
            case when family = 'sub_set' then cast(try_cast({nullif_('seats')} as double) as bigint) end as seats,
            case when family = 'payment' then try_cast({nullif_('amount')} as decimal(38, 4)) end as amount,
            case when family = 'payment' then {nullif_('payment_id')} end as payment_id,
            case when family = 'usage' then {nullif_('feature')} end as feature,
            case when family = 'usage' then {nullif_('user_id')} end as user_id,
            case when family = 'usage' then try_cast({nullif_('quantity')} as double) end as quantity,
            case when family = 'support' then {nullif_('ticket_id')} end as ticket_id,
            case when family = 'support' then lower(coalesce({nullif_('priority')}, 'normal')) end as priority,
            case when family = 'survey' then cast(try_cast({nullif_('score')} as double) as bigint) end as score,
            case when family = 'email' then {nullif_('campaign_id')} end as campaign_id,
            case when family = 'customer' then {nullif_('name')} end as name,
            case when family = 'customer' then {nullif_('segment')} end as segment,
            case when family = 'customer' then {nullif_('country')} end as country,
            case when family = 'customer' then {nullif_('industry')} end as industry,
            case when family = 'customer' then {nullif_('owner')} end as owner,
            case when family = 'sub_stop' then {nullif_('reason')} end as reason,
            case when family = 'survey' then {nullif_('comment')} end as comment,
            path as source_object,
            row_no as source_row
        from judged
    """)
    # De-duplicate: the first accepted occurrence of each event_id, by (path, row).
    con.execute("""
        create temp table firsts as
        select min(ord) as ord from classified where reject_reason is null group by event_id
    """)
    con.execute(f"""
        copy (
            select classified.* exclude (ord, reject_reason)
            from classified semi join firsts on firsts.ord = classified.ord
        ) to {sql_str(os.path.join(out, 'events.parquet'))} (format parquet)
    """)
    con.execute(f"""
        copy (
            select rejected.source_object, rejected.source_row, raw_lines.line as raw, rejected.reject_reason as reason
            from (select ord, source_object, source_row, reject_reason from classified where reject_reason is not null) as rejected
            join (select ord, line from raw_lines union all select ord, line from csv_lines) as raw_lines
              on raw_lines.ord = rejected.ord
            order by rejected.ord
        ) to {sql_str(os.path.join(out, 'rejects.parquet'))} (format parquet)
    """)
    rows_read, rejected = con.execute("select count(*), count(reject_reason) from classified").fetchone()
    accepted = con.execute("select count(*) from firsts").fetchone()[0]
    reasons = dict(con.execute(
        "select reject_reason, count(*) from classified where reject_reason is not null group by 1 order by 1").fetchall())
    for t in ["raw_lines", "csv_lines", "classified", "firsts", "object_paths"]:
        con.execute(f"drop table {t}")
    shutil.rmtree(tmp, ignore_errors=True)
    counts = {
        "objects": len(objects), "objects_skipped": len(skipped), "rows_read": rows_read,
        "accepted": accepted, "rejected": rejected, "duplicates": rows_read - accepted - rejected,
    }
    return counts, reasons


def build_spine(con, out, as_of):
    """The customer-month spine: MRR, segment and activity of every customer at
    every month cutoff (METRICS.md §0, §1, §3)."""
    d = f"date {sql_str(as_of)}"
    con.execute(f"""
        create temp view ev as
        select * from read_parquet({sql_str(os.path.join(out, 'events.parquet'))})
        where event_date <= {d}
    """)
    con.execute(f"""
        create temp table months as
        with bounds as (
            select cast(date_trunc('month', min(event_date)) as date) as first_month
            from ev
            where event_type like 'subscription.%' or event_type like 'payment.%'
        ),
        series as (
            select cast(unnest(range(first_month, date_trunc('month', {d}) + interval 1 month, interval 1 month)) as date) as month
            from bounds
            where first_month is not null
        )
        select
            month,
            case when month = date_trunc('month', {d}) then {d}
                 else cast(month + interval 1 month as date) - 1 end as cutoff,
            row_number() over (order by month) - 1 as month_index,
            case when month = date_trunc('month', {d}) then {d} = last_day({d}) else true end as is_complete
        from series
    """)
    con.execute("""
        create temp table customers as
        select distinct customer_id from ev
        where event_type like 'subscription.%' or event_type like 'payment.%'
    """)
    # Each subscription's state at the end of each day with a subscription event.
    con.execute("""
        create temp table subscription_days as
        select subscription_id, customer_id, event_date,
               case when event_type in ('subscription.paused', 'subscription.cancelled')
                    then cast(0 as decimal(38, 4)) else mrr end as mrr
        from ev
        where event_type in ('subscription.started', 'subscription.changed', 'subscription.resumed',
                             'subscription.paused', 'subscription.cancelled')
        qualify row_number() over (partition by subscription_id, event_date
                                   order by occurred_at desc, event_id desc) = 1
    """)
    con.execute("""
        create temp table segment_days as
        select customer_id, event_date, segment
        from ev
        where event_type in ('customer.created', 'customer.updated') and segment is not null and segment <> ''
        qualify row_number() over (partition by customer_id, event_date
                                   order by occurred_at desc, event_id desc) = 1
    """)
    # What each customer did each day, as counts (activity here, health later).
    con.execute("""
        create temp table customer_days as
        select customer_id, event_date,
            count(*) filter (where event_type like 'usage.%') as usage_events,
            count(*) filter (where event_type = 'support.ticket_opened') as tickets,
            count(*) filter (where event_type = 'support.ticket_opened' and priority in ('high', 'urgent')) as urgent_tickets,
            count(*) filter (where event_type = 'payment.succeeded') as payments_succeeded,
            count(*) filter (where event_type = 'payment.failed') as payments_failed,
            count(*) filter (where event_type = 'email.sent') as emails_sent,
            count(*) filter (where event_type = 'email.opened') as emails_opened
        from ev
        where event_type like 'usage.%'
           or event_type in ('support.ticket_opened', 'payment.succeeded', 'payment.failed', 'email.sent', 'email.opened')
        group by customer_id, event_date
    """)
    con.execute("""
        create temp table payment_days as
        select customer_id, event_date from customer_days where payments_succeeded > 0
    """)
    con.execute(f"""
        create temp table customer_months as
        with subscriptions as (
            select distinct subscription_id from subscription_days
        ),
        subscription_months as (
            select months.month, months.cutoff, state.customer_id, state.mrr
            from months
            cross join subscriptions
            asof join subscription_days as state
              on state.subscription_id = subscriptions.subscription_id
             and months.cutoff >= state.event_date
        ),
        customer_mrr as (
            select month, customer_id, sum(mrr) as mrr
            from subscription_months
            group by month, customer_id
        ),
        grid as (
            select months.month, months.cutoff, months.month_index, months.is_complete, customers.customer_id
            from months cross join customers
        ),
        with_segment as (
            select grid.*, coalesce(segment_days.segment, 'unknown') as segment
            from grid
            asof left join segment_days
              on segment_days.customer_id = grid.customer_id and grid.cutoff >= segment_days.event_date
        ),
        with_payment as (
            select with_segment.*, payment_days.event_date as last_payment
            from with_segment
            asof left join payment_days
              on payment_days.customer_id = with_segment.customer_id and with_segment.cutoff >= payment_days.event_date
        ),
        states as (
            select with_payment.*,
                   coalesce(customer_mrr.mrr, cast(0 as decimal(38, 4))) as mrr
            from with_payment
            left join customer_mrr
              on customer_mrr.month = with_payment.month and customer_mrr.customer_id = with_payment.customer_id
        )
        select
            month, cutoff, month_index, is_complete, customer_id, segment, mrr,
            coalesce(lag(mrr) over w, cast(0 as decimal(38, 4))) as prev_mrr,
            coalesce(max(mrr > 0) over (w rows between unbounded preceding and 1 preceding), false) as had_mrr_before,
            mrr > 0 or coalesce(last_payment > cutoff - {ACTIVITY_WINDOW_DAYS}, false) as is_active
        from states
        window w as (partition by customer_id order by month)
    """)
    return con.execute("select count(*) from customer_months").fetchone()[0]


def build_mrr_monthly(con):
    con.execute("""
        create temp table mrr_monthly as
        with moving as (
            select month, customer_id, segment, mrr, prev_mrr, had_mrr_before
            from customer_months
            where prev_mrr > 0 or mrr > 0
        ),
        classified as (
            select *,
                case
                    when prev_mrr = 0 and mrr > 0 and not had_mrr_before then 'new'
                    when prev_mrr = 0 and mrr > 0 then 'reactivation'
                    when prev_mrr > 0 and mrr > prev_mrr then 'expansion'
                    when prev_mrr > 0 and mrr > 0 and mrr < prev_mrr then 'contraction'
                    when prev_mrr > 0 and mrr = 0 then 'churn'
                    else 'unchanged'
                end as movement
            from moving
        )
        select month, customer_id, segment, mrr, prev_mrr, movement,
            cast(case movement
                when 'new' then mrr
                when 'reactivation' then mrr
                when 'expansion' then mrr - prev_mrr
                when 'contraction' then prev_mrr - mrr
                when 'churn' then prev_mrr
                else 0 end as decimal(38, 4)) as movement_amount
        from classified
        order by month, customer_id
    """)
    return con.execute("select count(*) from mrr_monthly").fetchone()[0]


def build_mrr_bridge(con):
    con.execute("""
        create temp table mrr_bridge_monthly as
        with totals as (
            select month, coalesce(segment, 'all') as segment,
                sum(prev_mrr) as start_mrr,
                sum(movement_amount) filter (where movement = 'new') as new_mrr,
                sum(movement_amount) filter (where movement = 'reactivation') as reactivation_mrr,
                sum(movement_amount) filter (where movement = 'expansion') as expansion_mrr,
                sum(movement_amount) filter (where movement = 'contraction') as contraction_mrr,
                sum(movement_amount) filter (where movement = 'churn') as churned_mrr,
                sum(mrr) as end_mrr,
                count(*) filter (where prev_mrr > 0) as start_customers,
                count(*) filter (where movement = 'new') as new_customers,
                count(*) filter (where movement = 'reactivation') as reactivated_customers,
                count(*) filter (where movement = 'churn') as churned_customers,
                count(*) filter (where mrr > 0) as end_customers
            from mrr_monthly
            group by grouping sets ((month, segment), (month))
        ),
        month_segments as (
            select month, segment from totals
            union
            select month, 'all' from months
        ),
        z as (select cast(0 as decimal(38, 4)) as zero)
        select
            ms.month, ms.segment,
            cast(coalesce(t.start_mrr, z.zero) as decimal(38, 4)) as start_mrr,
            cast(coalesce(t.new_mrr, z.zero) as decimal(38, 4)) as new_mrr,
            cast(coalesce(t.reactivation_mrr, z.zero) as decimal(38, 4)) as reactivation_mrr,
            cast(coalesce(t.expansion_mrr, z.zero) as decimal(38, 4)) as expansion_mrr,
            cast(coalesce(t.contraction_mrr, z.zero) as decimal(38, 4)) as contraction_mrr,
            cast(coalesce(t.churned_mrr, z.zero) as decimal(38, 4)) as churned_mrr,
            cast(coalesce(t.end_mrr, z.zero) as decimal(38, 4)) as end_mrr,
            coalesce(t.start_customers, 0) as start_customers,
            coalesce(t.new_customers, 0) as new_customers,
            coalesce(t.reactivated_customers, 0) as reactivated_customers,
            coalesce(t.churned_customers, 0) as churned_customers,
            coalesce(t.end_customers, 0) as end_customers,
            cast(t.start_mrr + coalesce(t.expansion_mrr, 0) - coalesce(t.contraction_mrr, 0) - coalesce(t.churned_mrr, 0) as double)
                / cast(nullif(t.start_mrr, 0) as double) as ndr,
            cast(t.start_mrr - coalesce(t.contraction_mrr, 0) - coalesce(t.churned_mrr, 0) as double)
                / cast(nullif(t.start_mrr, 0) as double) as grr,
            months.is_complete
        from month_segments ms
        join months on months.month = ms.month
        left join totals t on t.month = ms.month and t.segment = ms.segment
        cross join z
        order by ms.month, ms.segment
    """)
    return con.execute("select count(*) from mrr_bridge_monthly").fetchone()[0]


def build_ndr(con):
    con.execute("""
        create temp table ndr_trailing_12m as
        with base as (
            select cur.month, base.segment, base.customer_id, base.mrr as base_mrr, cur.mrr as current_mrr
            from customer_months base
            join customer_months cur
              on cur.customer_id = base.customer_id and cur.month_index = base.month_index + 12
            where base.mrr > 0
        ),
        totals as (
            select month, coalesce(segment, 'all') as segment,
                sum(base_mrr) as base_mrr, sum(current_mrr) as current_mrr,
                sum(least(current_mrr, base_mrr)) as retained_mrr,
                count(*) as base_customers,
                count(*) filter (where current_mrr > 0) as retained_customers
            from base
            group by grouping sets ((month, segment), (month))
        ),
        month_segments as (
            select month, segment from totals
            union
            select month, 'all' from months where month_index >= 12
        )
        select
            cast(coalesce(t.base_mrr, 0) as decimal(38, 4)) as base_mrr,
            cast(coalesce(t.current_mrr, 0) as decimal(38, 4)) as current_mrr,
            cast(t.current_mrr as double) / cast(nullif(t.base_mrr, 0) as double) as ndr_12m,
            cast(t.retained_mrr as double) / cast(nullif(t.base_mrr, 0) as double) as grr_12m,
            coalesce(t.base_customers, 0) as base_customers,
            coalesce(t.retained_customers, 0) as retained_customers,
            ms.month, ms.segment, months.is_complete
        from month_segments ms
        join months on months.month = ms.month
        left join totals t on t.month = ms.month and t.segment = ms.segment
        order by ms.month, ms.segment
    """)
    return con.execute("select count(*) from ndr_trailing_12m").fetchone()[0]


def build_customer_health(con):
    """METRICS.md §7: the inputs over trailing windows of every snapshot date
    (the month cutoffs), then the component scores, the weighted score, band,
    drivers and change since the previous snapshot."""
    con.execute("""
        create temp table feature_days as
        select distinct customer_id, feature, event_date
        from ev
        where event_type like 'usage.%' and feature is not null and feature <> ''
    """)
    con.execute("""
        create temp table windows as
        select cutoff as snapshot_date, cast(cutoff - cast(days_before as integer) as date) as event_date, days_before
        from months, range(0, 180) t(days_before)
    """)
    w = WEIGHTS
    con.execute(f"""
        create temp table customer_health as
        with scored as (
            select cutoff as snapshot_date, customer_id, segment, mrr
            from customer_months
            where is_active
        ),
        previous as (
            select cutoff, lag(cutoff) over (order by month) as previous_snapshot_date from months
        ),
        daily as (
            select cd.customer_id, w.snapshot_date,
                count(*) filter (where w.days_before < 30 and cd.usage_events > 0) as active_days_30d,
                sum(cd.usage_events) filter (where w.days_before < 30) as usage_30d,
                sum(cd.usage_events) filter (where w.days_before >= 30 and w.days_before < 60) as usage_prior_30d,
                sum(cd.tickets) filter (where w.days_before < 30) as tickets_30d,
                sum(cd.urgent_tickets) filter (where w.days_before < 30) as urgent_30d,
                sum(cd.payments_failed) as failed_90d,
                sum(cd.emails_sent) as sent_90d,
                sum(cd.emails_opened) as opened_90d
            from customer_days cd
            join windows w on w.event_date = cd.event_date and w.days_before < 90
            group by cd.customer_id, w.snapshot_date
        ),
        features as (
            select fd.customer_id, w.snapshot_date, count(distinct fd.feature) as features_30d
            from feature_days fd
            join windows w on w.event_date = fd.event_date and w.days_before < 30
            group by fd.customer_id, w.snapshot_date
        ),
        surveys as (
            select customer_id, event_type, score, event_date, occurred_at, event_id
            from ev where event_type in ('survey.nps', 'survey.csat')
        ),
        latest_surveys as (
            select customer_id, snapshot_date,
                max(score) filter (where event_type = 'survey.nps') as nps,
                max(score) filter (where event_type = 'survey.csat') as csat
            from (
                select s.customer_id, w.snapshot_date, s.event_type, s.score
                from surveys s
                join windows w on w.event_date = s.event_date
                qualify row_number() over (partition by s.customer_id, w.snapshot_date, s.event_type
                                           order by s.occurred_at desc, s.event_id desc) = 1
            )
            group by customer_id, snapshot_date
        ),
        inputs as (
            select s.snapshot_date, p.previous_snapshot_date, s.customer_id, s.segment, s.mrr,
                -- doubles, as METRICS.md §10.1 computes scores (not DuckDB's decimal literals)
                cast(coalesce(d.active_days_30d, 0) as double) as active_days_30d,
                cast(coalesce(f.features_30d, 0) as double) as features_30d,
                cast(coalesce(d.usage_30d, 0) as double) as u1,
                cast(coalesce(d.usage_prior_30d, 0) as double) as u0,
                cast(ls.nps as double) as nps, cast(ls.csat as double) as csat,
                cast(coalesce(d.tickets_30d, 0) as double) as t,
                cast(coalesce(d.urgent_30d, 0) as double) as h,
                cast(coalesce(d.failed_90d, 0) as double) as p,
                cast(coalesce(d.sent_90d, 0) as double) as sent,
                cast(coalesce(d.opened_90d, 0) as double) as opened
            from scored s
            join previous p on p.cutoff = s.snapshot_date
            left join daily d on d.customer_id = s.customer_id and d.snapshot_date = s.snapshot_date
            left join features f on f.customer_id = s.customer_id and f.snapshot_date = s.snapshot_date
            left join latest_surveys ls on ls.customer_id = s.customer_id and ls.snapshot_date = s.snapshot_date
        ),
        components as (
            select snapshot_date, previous_snapshot_date, customer_id, segment, mrr,
                least(100.0, 100.0 * active_days_30d / {TARGET_ACTIVE_DAYS}) as usage_score,
                least(100.0, 100.0 * features_30d / {TARGET_FEATURES}) as breadth_score,
                case when u0 = 0 and u1 = 0 then 0.0 when u0 = 0 then 100.0
                     else least(100.0, 50.0 * u1 / u0) end as trend_score,
                case when nps is not null then 10.0 * nps
                     when csat is not null then 25.0 * (csat - 1) end as sentiment_score,
                greatest(0.0, 100.0 - 15.0 * t - 25.0 * h) as support_score,
                greatest(0.0, 100.0 - 50.0 * p) as billing_score,
                case when sent > 0 then least(100.0, 100.0 * (opened / sent) / 0.4) end as email_score
            from inputs
        ),
        weighted as (
            select *,
                (coalesce({w['usage']} * usage_score, 0) + coalesce({w['breadth']} * breadth_score, 0)
                 + coalesce({w['trend']} * trend_score, 0) + coalesce({w['sentiment']} * sentiment_score, 0)
                 + coalesce({w['support']} * support_score, 0) + coalesce({w['billing']} * billing_score, 0)
                 + coalesce({w['email']} * email_score, 0))
                / nullif(
                    (case when usage_score is null then 0 else {w['usage']} end)
                    + (case when breadth_score is null then 0 else {w['breadth']} end)
                    + (case when trend_score is null then 0 else {w['trend']} end)
                    + (case when sentiment_score is null then 0 else {w['sentiment']} end)
                    + (case when support_score is null then 0 else {w['support']} end)
                    + (case when billing_score is null then 0 else {w['billing']} end)
                    + (case when email_score is null then 0 else {w['email']} end), 0) as health_score
            from components
        ),
        drivers as (
            -- the two largest weighted shortfalls w * (100 - score), rounded to 9
            -- decimals, ties by component name; missing components drop out
            select snapshot_date, customer_id,
                string_agg(component, ',' order by shortfall desc, component) filter (where rank <= 2) as top_drivers
            from (
                select snapshot_date, customer_id, component, shortfall,
                    row_number() over (partition by snapshot_date, customer_id order by shortfall desc, component) as rank
                from (
                    select snapshot_date, customer_id,
                        unnest(['billing', 'breadth', 'email', 'sentiment', 'support', 'trend', 'usage']) as component,
                        unnest([
                            round({w['billing']} * (100 - billing_score), 9),
                            round({w['breadth']} * (100 - breadth_score), 9),
                            round({w['email']} * (100 - email_score), 9),
                            round({w['sentiment']} * (100 - sentiment_score), 9),
                            round({w['support']} * (100 - support_score), 9),
                            round({w['trend']} * (100 - trend_score), 9),
                            round({w['usage']} * (100 - usage_score), 9)]) as shortfall
                    from weighted
                )
                where shortfall is not null
            )
            group by snapshot_date, customer_id
        )
        select
            wt.snapshot_date, wt.customer_id, wt.segment, wt.mrr,
            cast(wt.usage_score as double) as usage_score, cast(wt.breadth_score as double) as breadth_score,
            cast(wt.trend_score as double) as trend_score, cast(wt.sentiment_score as double) as sentiment_score,
            cast(wt.support_score as double) as support_score, cast(wt.billing_score as double) as billing_score,
            cast(wt.email_score as double) as email_score, cast(wt.health_score as double) as health_score,
            case when round(wt.health_score, 9) >= {BAND_GREEN} then 'green'
                 when round(wt.health_score, 9) >= {BAND_YELLOW} then 'yellow' else 'red' end as band,
            d.top_drivers,
            cast(wt.health_score - prev.health_score as double) as score_change
        from weighted wt
        join drivers d on d.snapshot_date = wt.snapshot_date and d.customer_id = wt.customer_id
        left join weighted prev
          on prev.customer_id = wt.customer_id and prev.snapshot_date = wt.previous_snapshot_date
        order by wt.snapshot_date, wt.customer_id
    """)
    return con.execute("select count(*) from customer_health").fetchone()[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raw", required=True, help="raw prefix (local folder)")
    ap.add_argument("--out", required=True, help="folder for events.parquet, rejects.parquet and the marts")
    ap.add_argument("--as-of", required=True, help="as-of date D (YYYY-MM-DD)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="DuckDB threads (default: cores)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    started = time.perf_counter()
    con = duckdb.connect()
    con.execute(f"set threads = {int(args.threads)}")
    con.execute(f"set temp_directory = {sql_str(os.path.join(args.out, '_spill'))}")
    # DuckDB's advice for large loads; nothing here relies on result order
    # (rows carry their own `ord`).
    con.execute("set preserve_insertion_order = false")
    steps = []

    def step(name, fn, *a):
        t = time.perf_counter()
        rows = fn(*a)
        steps.append({"name": name, "seconds": time.perf_counter() - t,
                      **({"rows": rows} if isinstance(rows, int) else {})})
        print(f"{name}: {steps[-1]['seconds']:.3f}s", file=sys.stderr)
        return rows

    t = time.perf_counter()
    counts, reasons = ingest(con, args.raw, args.out)
    steps.append({"name": "ingest", "seconds": time.perf_counter() - t, "rows": counts["accepted"]})
    print(f"ingest: {steps[-1]['seconds']:.3f}s {counts} {reasons}", file=sys.stderr)
    step("customer_months", build_spine, con, args.out, args.as_of)
    step("mrr_monthly", build_mrr_monthly, con)
    step("mrr_bridge_monthly", build_mrr_bridge, con)
    step("ndr_trailing_12m", build_ndr, con)
    step("customer_health", build_customer_health, con)

    def write():
        for mart in MARTS:
            con.execute(f"copy {mart} to {sql_str(os.path.join(args.out, mart + '.parquet'))} (format parquet)")

    step("write", write)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if sys.platform == "darwin":
        peak //= 1024
    print(json.dumps({
        "steps": steps,
        "seconds": time.perf_counter() - started,
        "peak_rss_kib": peak,
        "threads": int(args.threads),
        "duckdb_version": duckdb.__version__,
        "counts": counts,
        "rejects_by_reason": reasons,
    }))


if __name__ == "__main__":
    main()
