"""Reads Parquet files the way weir's users will: with pyarrow and with DuckDB.

Prints one JSON object per file: the column types each reader sees and every row as
text from each, so a test can check that both agree with what weir registered.
Usage: readback.py FILE.parquet...
"""
import json
import sys

import duckdb
import pyarrow.parquet as pq


def main() -> None:
    for path in sys.argv[1:]:
        table = pq.read_table(path)
        con = duckdb.connect()
        rel = con.sql(f"SELECT * FROM read_parquet('{path}')")
        duck_types = {name: str(t) for name, t in zip(rel.columns, rel.types)}
        # As text in UTC: no Python datetime conversion (and no pytz) involved.
        con.sql("SET TimeZone = 'UTC'")
        text = con.sql(f"SELECT CAST(COLUMNS(*) AS VARCHAR) FROM read_parquet('{path}')")
        duck_rows = [list(row) for row in text.fetchall()]
        print(json.dumps({
            "path": path,
            "rows": table.num_rows,
            "pyarrow": {f.name: str(f.type) for f in table.schema},
            "duckdb": duck_types,
            "duckdb_rows": duck_rows,
        }))


if __name__ == "__main__":
    main()
