//! Statistics gathered from the record batches as they stream past: row count, null
//! counts, and min/max for integer, float, date and timestamp columns. The same code
//! serves every input format, so the numbers describe what was written (or kept).

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{
    DataType, Date32Type, Float64Type, Int64Type, TimeUnit, TimestampMicrosecondType,
};
use arrow::record_batch::RecordBatch;
use weir_events::{ColumnStats, StatValue, Statistics};

use crate::values::{format_date, format_timestamp};

#[derive(Debug, Clone, Copy)]
enum Measure {
    None,
    Int,
    Float,
    Date,
    /// Zoned timestamps print with `Z`: the stored value is the UTC instant.
    Timestamp {
        zoned: bool,
    },
}

impl Measure {
    fn of(dt: &DataType) -> Self {
        use DataType::*;
        match dt {
            Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 => Measure::Int,
            Float16 | Float32 | Float64 => Measure::Float,
            Date32 | Date64 => Measure::Date,
            Timestamp(_, tz) => Measure::Timestamp {
                zoned: tz.is_some(),
            },
            _ => Measure::None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
enum Bound {
    I(i64),
    F(f64),
}

struct Column {
    name: String,
    measure: Measure,
    nulls: u64,
    min: Option<Bound>,
    max: Option<Bound>,
}

pub struct StatsBuilder {
    rows: u64,
    columns: Vec<Column>,
}

impl StatsBuilder {
    pub fn new(schema: &arrow::datatypes::Schema) -> Self {
        StatsBuilder {
            rows: 0,
            columns: schema
                .fields()
                .iter()
                .map(|f| Column {
                    name: f.name().clone(),
                    measure: Measure::of(f.data_type()),
                    nulls: 0,
                    min: None,
                    max: None,
                })
                .collect(),
        }
    }

    pub fn add(&mut self, batch: &RecordBatch) {
        self.rows += batch.num_rows() as u64;
        for (col, array) in self.columns.iter_mut().zip(batch.columns()) {
            col.nulls += array.logical_null_count() as u64;
            if let Some((lo, hi)) = bounds(col.measure, array) {
                col.min = Some(match col.min {
                    Some(m) if m <= lo => m,
                    _ => lo,
                });
                col.max = Some(match col.max {
                    Some(m) if m >= hi => m,
                    _ => hi,
                });
            }
        }
    }

    pub fn finish(self) -> Statistics {
        let columns = self
            .columns
            .into_iter()
            .map(|c| {
                let show = |b: Option<Bound>| {
                    b.map(|b| match (c.measure, b) {
                        (Measure::Date, Bound::I(d)) => StatValue::Text(format_date(d)),
                        (Measure::Timestamp { zoned }, Bound::I(t)) => {
                            StatValue::Text(format_timestamp(t, zoned))
                        }
                        (_, Bound::I(i)) => StatValue::Int(i),
                        (_, Bound::F(f)) => StatValue::Float(f),
                    })
                };
                ColumnStats {
                    null_count: c.nulls,
                    min: show(c.min),
                    max: show(c.max),
                    name: c.name,
                }
            })
            .collect();
        Statistics {
            rows: self.rows,
            columns,
        }
    }
}

/// Min and max of one batch's column, NaN ignored; `None` when there is nothing to
/// measure or the cast to the measuring type fails.
fn bounds(measure: Measure, array: &ArrayRef) -> Option<(Bound, Bound)> {
    let target = match measure {
        Measure::None => return None,
        Measure::Int => DataType::Int64,
        Measure::Float => DataType::Float64,
        Measure::Date => DataType::Date32,
        // Keep the zone: a cast to a naive timestamp would shift to local wall time.
        Measure::Timestamp { .. } => match array.data_type() {
            DataType::Timestamp(_, tz) => DataType::Timestamp(TimeUnit::Microsecond, tz.clone()),
            _ => return None,
        },
    };
    let casted = if array.data_type() == &target {
        array.clone()
    } else {
        cast(array, &target).ok()?
    };
    let fold = |it: &mut dyn Iterator<Item = Bound>| {
        it.fold(None, |acc: Option<(Bound, Bound)>, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((if v < lo { v } else { lo }, if v > hi { v } else { hi })),
        })
    };
    match measure {
        Measure::None => None,
        Measure::Int => fold(
            &mut casted
                .as_primitive::<Int64Type>()
                .iter()
                .flatten()
                .map(Bound::I),
        ),
        Measure::Float => fold(
            &mut casted
                .as_primitive::<Float64Type>()
                .iter()
                .flatten()
                .filter(|f| !f.is_nan())
                .map(Bound::F),
        ),
        Measure::Date => fold(
            &mut casted
                .as_primitive::<Date32Type>()
                .iter()
                .flatten()
                .map(|d| Bound::I(i64::from(d))),
        ),
        Measure::Timestamp { .. } => fold(
            &mut casted
                .as_primitive::<TimestampMicrosecondType>()
                .iter()
                .flatten()
                .map(Bound::I),
        ),
    }
}
