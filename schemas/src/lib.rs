//! Format sniffing, schema inference and conversion to Parquet (being built).
