#!/usr/bin/env python3
"""Independent reader of tenure's published Delta tables, for the integration tests.

    python3 tests/py/read_delta.py <table_uri> [--version N] [--sort col,col]

Reads the table with the Python `deltalake` package and pyarrow (not with the
code under test) and prints ONE JSON document:

    {"version": N, "partition_columns": [...],
     "schema": [{"name": ..., "type": "<arrow type string>"}],
     "rows": [{col: value}]}

Values are rendered so that a test can compare them as text:
decimals as strings with exactly their scale ("99.9000"), dates "YYYY-MM-DD",
timestamps ISO 8601 in UTC with microseconds and "Z", NULL as null, integers as
JSON integers, floats as JSON numbers. Rows are sorted by all columns rendered
as strings (in schema order) unless --sort names the columns to sort by.
"""
import argparse
import datetime as dt
import decimal
import json
import os
import sys

# Decimal128(38, s) needs 38 significant digits; the default context has 28.
decimal.getcontext().prec = 80

import pyarrow as pa
from deltalake import DeltaTable


def render(value, typ):
    if value is None:
        return None
    if pa.types.is_decimal(typ):
        quantum = decimal.Decimal(1).scaleb(-typ.scale)
        text = format(value.quantize(quantum), "f")
        return "0" + text[2:] if text.startswith("-0") and value == 0 else text
    if pa.types.is_timestamp(typ):
        if value.tzinfo is None:  # a zone-less timestamp is UTC by the Delta protocol
            value = value.replace(tzinfo=dt.timezone.utc)
        value = value.astimezone(dt.timezone.utc)
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if pa.types.is_date(typ):
        return value.isoformat()
    if pa.types.is_binary(typ) or pa.types.is_large_binary(typ):
        return value.hex()
    if isinstance(value, (list, dict)):
        return json.loads(json.dumps(value, default=str))
    return value


def sort_key(row, columns):
    # None sorts before any string; the marker keeps "" and NULL apart.
    return tuple((0, "") if row[c] is None else (1, str(row[c])) for c in columns)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table_uri")
    parser.add_argument("--version", type=int, default=None)
    parser.add_argument("--sort", default=None, help="comma-separated columns to sort by")
    args = parser.parse_args()

    try:
        table = DeltaTable(args.table_uri, version=args.version)
    except Exception as exc:  # the message goes to the test's failure output
        print(f"read_delta.py: cannot open {args.table_uri}: {exc}", file=sys.stderr)
        return 2
    data = table.to_pyarrow_table()
    schema = data.schema
    rows = []
    for record in data.to_pylist():
        rows.append({f.name: render(record[f.name], f.type) for f in schema})
    columns = args.sort.split(",") if args.sort else [f.name for f in schema]
    unknown = [c for c in columns if c not in schema.names]
    if unknown:
        print(f"read_delta.py: --sort names unknown columns {unknown}", file=sys.stderr)
        return 2
    rows.sort(key=lambda r: sort_key(r, columns))
    out = {
        "version": table.version(),
        "partition_columns": list(table.metadata().partition_columns),
        "schema": [{"name": f.name, "type": str(f.type)} for f in schema],
        "rows": rows,
    }
    json.dump(out, sys.stdout, allow_nan=True)
    sys.stdout.write("\n")
    return 0


def exit_after(main):
    """Run `main` and exit with its code, skipping interpreter teardown: the
    native threads of deltalake/pyarrow can abort the process at exit
    ("terminate called without an active exception") after the output was
    complete."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_after(main)
