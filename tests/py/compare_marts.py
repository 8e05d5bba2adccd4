#!/usr/bin/env python3
"""Compare every mart of two warehouses with the Python `deltalake` reader.

    python3 tests/py/compare_marts.py <warehouse_a> <warehouse_b> [--ignore col,col]
        [--tables t,t] [--b-options JSON]

For each table under `<warehouse_a>/marts` (and any only in b; or those of
--tables, for a warehouse b in object storage read with --b-options), reads both
sides with `deltalake` and pyarrow (not the code under test), renders values
as read_delta.py does (floats exactly, by their shortest round-trip text),
drops the ignored columns, and compares schema and the sorted rows. Prints ONE
JSON document: {"tables": {name: rows}, "differences": [sentences]}.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from read_delta import exit_after, render  # noqa: E402

from deltalake import DeltaTable  # noqa: E402


def rows_of(path, ignore, options=None):
    data = DeltaTable(path, storage_options=options).to_pyarrow_table()
    fields = [f for f in data.schema if f.name not in ignore]
    rows = [json.dumps({f.name: render(r[f.name], f.type) for f in fields}, sort_keys=True, allow_nan=True)
            for r in data.to_pylist()]
    return [(f.name, str(f.type)) for f in fields], sorted(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--ignore", default="")
    parser.add_argument("--tables", default="")
    parser.add_argument("--b-options", default=None)
    args = parser.parse_args()
    ignore = set(filter(None, args.ignore.split(",")))
    b_options = json.loads(args.b_options) if args.b_options else None
    if args.tables:
        names = args.tables.split(",")
    else:
        names = sorted(set(os.listdir(os.path.join(args.a, "marts"))) | set(os.listdir(os.path.join(args.b, "marts"))))
    tables, differences = {}, []
    for name in names:
        sides = []
        for root, options in ((args.a, None), (args.b, b_options)):
            path = root.rstrip("/") + "/marts/" + name
            if options is None and not os.path.isdir(os.path.join(path, "_delta_log")):
                differences.append(f"{name}: missing in {root}")
                break
            sides.append(rows_of(path, ignore, options))
        if len(sides) != 2:
            continue
        (schema_a, rows_a), (schema_b, rows_b) = sides
        tables[name] = len(rows_a)
        if schema_a != schema_b:
            differences.append(f"{name}: schema {schema_a} != {schema_b}")
        elif rows_a != rows_b:
            only_a = sorted(set(rows_a) - set(rows_b))[:3]
            only_b = sorted(set(rows_b) - set(rows_a))[:3]
            differences.append(f"{name}: {len(rows_a)} vs {len(rows_b)} rows; only in a: {only_a}; only in b: {only_b}")
    json.dump({"tables": tables, "differences": differences}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    exit_after(main)
