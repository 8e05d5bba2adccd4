"""Read a report's exports back as other tools would: every CSV with Python's
csv module, the workbook with openpyxl. Prints what was read as JSON: per CSV
its header and row count and first row; per sheet its header, row count,
frozen cell, and the type and number format of each column's first value."""
import csv
import json
import os
import sys

import openpyxl

out = sys.argv[1]
facts = {"csv": {}, "xlsx": {}}
for name in sorted(os.listdir(os.path.join(out, "csv"))):
    with open(os.path.join(out, "csv", name), newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    facts["csv"][name[: -len(".csv")]] = {"header": rows[0], "rows": len(rows) - 1, "first": rows[1] if len(rows) > 1 else None}

book = openpyxl.load_workbook(os.path.join(out, "finance.xlsx"))
for sheet in book.worksheets:
    header = [c.value for c in sheet[1]]
    columns = {}
    for index, column in enumerate(header, start=1):
        first = None
        for row in range(2, sheet.max_row + 1):
            cell = sheet.cell(row=row, column=index)
            if cell.value is not None:
                value = cell.value
                if hasattr(value, "isoformat"):
                    value = value.isoformat()
                first = {"type": type(cell.value).__name__, "format": cell.number_format, "value": value}
                break
        columns[column] = first
    facts["xlsx"][sheet.title] = {"header": header, "rows": sheet.max_row - 1, "freeze": sheet.freeze_panes, "columns": columns}
print(json.dumps(facts))
