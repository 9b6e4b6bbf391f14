"""The peers weir's conversion is measured against, one conversion per process.

usage: peers.py TOOL FORMAT INPUT OUTPUT
  TOOL   duckdb | polars | pyarrow
  FORMAT csv | ndjson

Each writes Parquet with zstd and prints one JSON line: {"tool", "version", "rows",
"seconds"} where seconds is the conversion alone (after imports; rows only where the
tool hands them out for free). weir-bench times the whole process, reads its peak RSS
from /usr/bin/time -v and counts the rows from the Parquet footer itself.
"""

import json
import sys
import time


def duckdb_convert(fmt, src, dst):
    import duckdb

    con = duckdb.connect()
    reader = (
        f"read_csv('{src}')"
        if fmt == "csv"
        else f"read_json('{src}', format='newline_delimited')"
    )
    t = time.perf_counter()
    con.execute(
        f"COPY (SELECT * FROM {reader}) TO '{dst}' (FORMAT parquet, COMPRESSION zstd)"
    )
    secs = time.perf_counter() - t
    return duckdb.__version__, None, secs


def polars_convert(fmt, src, dst):
    import polars as pl

    t = time.perf_counter()
    if fmt == "csv":
        # try_parse_dates: read the timestamp columns as timestamps, as the others do.
        lf = pl.scan_csv(src, try_parse_dates=True)
    else:
        lf = pl.scan_ndjson(src)
    lf.sink_parquet(dst, compression="zstd")
    secs = time.perf_counter() - t
    return pl.__version__, None, secs


def pyarrow_convert(fmt, src, dst):
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = time.perf_counter()
    rows = 0
    if fmt == "csv":
        import pyarrow.csv as pcsv

        reader = pcsv.open_csv(src)
    else:
        import pyarrow.json as pjson

        reader = pjson.open_json(src)
    writer = None
    for batch in reader:
        if writer is None:
            writer = pq.ParquetWriter(dst, batch.schema, compression="zstd")
        writer.write_batch(batch)
        rows += batch.num_rows
    if writer is not None:
        writer.close()
    secs = time.perf_counter() - t
    return pa.__version__, rows, secs


def main():
    tool, fmt, src, dst = sys.argv[1:5]
    convert = {
        "duckdb": duckdb_convert,
        "polars": polars_convert,
        "pyarrow": pyarrow_convert,
    }[tool]
    version, rows, secs = convert(fmt, src, dst)
    print(json.dumps({"tool": tool, "version": version, "rows": rows, "seconds": secs}))


if __name__ == "__main__":
    main()
