"""Runs SQL queries in DuckDB over Parquet files, for query/tests/engine.rs.

stdin: {"tables": {"name": "/path/file.parquet", ...}, "queries": ["SELECT ...", ...]}
stdout: [{"columns": [...], "rows": [[...], ...]}, ...] with dates and times in ISO 8601
and decimals as floats, so the test can compare them with DataFusion's results.
"""

import datetime
import decimal
import json
import sys

import duckdb


def plain(value):
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    return value


def main():
    job = json.load(sys.stdin)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for name, path in job["tables"].items():
        con.execute(f"CREATE VIEW \"{name}\" AS SELECT * FROM read_parquet('{path}')")
    out = []
    for sql in job["queries"]:
        cur = con.execute(sql)
        columns = [d[0] for d in cur.description]
        rows = [[plain(v) for v in row] for row in cur.fetchall()]
        out.append({"columns": columns, "rows": rows})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
