//! Writing a result as it streams: an aligned text table, JSON lines, CSV or a Parquet
//! file. Every writer takes one batch at a time and holds none of the earlier ones.

use std::io::Write;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
pub use arrow::error::ArrowError;
use arrow::util::display::{ArrayFormatter, FormatOptions};

/// The output formats of `weir query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Columns aligned for reading; widths fixed by the first batch. Text wider than
    /// [`MAX_CELL`] characters, or than its column, is cut with `…`; a number never is
    /// (it widens its own line). JSON lines, CSV and Parquet hold the exact values.
    Table,
    /// One JSON object per row, nulls included.
    JsonLines,
    /// A header line, then one line per row.
    Csv,
    /// One Parquet file (zstd).
    Parquet,
}

/// Widest a table column gets.
pub const MAX_CELL: usize = 40;

/// A sink for a result's batches; `finish` completes the output (the Parquet footer,
/// the table's row count).
pub trait BatchWriter: Send {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), ArrowError>;
    fn finish(self: Box<Self>) -> Result<(), ArrowError>;
}

/// A writer of `format` for results of `schema` into `out`.
pub fn writer<W: Write + Send + 'static>(
    format: Format,
    schema: SchemaRef,
    out: W,
) -> Result<Box<dyn BatchWriter>, ArrowError> {
    Ok(match format {
        Format::Table => Box::new(Table::new(schema, out)),
        Format::JsonLines => Box::new(JsonLines(
            arrow::json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, arrow::json::writer::LineDelimited>(out),
        )),
        Format::Csv => Box::new(Csv {
            out,
            schema,
            header_done: false,
        }),
        Format::Parquet => {
            let props = parquet::file::properties::WriterProperties::builder()
                .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
                .build();
            Box::new(Parquet(
                parquet::arrow::ArrowWriter::try_new(out, schema, Some(props))
                    .map_err(|e| ArrowError::ExternalError(Box::new(e)))?,
            ))
        }
    })
}

struct JsonLines<W: Write>(arrow::json::Writer<W, arrow::json::writer::LineDelimited>);

impl<W: Write + Send> BatchWriter for JsonLines<W> {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), ArrowError> {
        self.0.write(batch)?;
        // Each batch reaches the reader as it comes.
        self.0.get_mut().flush().map_err(Into::into)
    }
    fn finish(mut self: Box<Self>) -> Result<(), ArrowError> {
        self.0.finish()?;
        self.0.get_mut().flush().map_err(Into::into)
    }
}

/// Each batch is encoded on its own (the header with the first), then written out
/// and flushed, so rows reach the reader as they come.
struct Csv<W: Write> {
    out: W,
    schema: SchemaRef,
    header_done: bool,
}

impl<W: Write + Send> BatchWriter for Csv<W> {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), ArrowError> {
        let mut writer = arrow::csv::WriterBuilder::new()
            .with_header(!self.header_done)
            .build(Vec::new());
        writer.write(batch)?;
        self.header_done = true;
        self.out.write_all(&writer.into_inner())?;
        self.out.flush().map_err(Into::into)
    }
    fn finish(mut self: Box<Self>) -> Result<(), ArrowError> {
        if !self.header_done {
            // The header alone, for an empty result.
            let empty = RecordBatch::new_empty(self.schema.clone());
            self.write(&empty)?;
        }
        self.out.flush().map_err(Into::into)
    }
}

struct Parquet<W: Write + Send>(parquet::arrow::ArrowWriter<W>);

impl<W: Write + Send> BatchWriter for Parquet<W> {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), ArrowError> {
        self.0
            .write(batch)
            .map_err(|e| ArrowError::ExternalError(Box::new(e)))
    }
    fn finish(self: Box<Self>) -> Result<(), ArrowError> {
        let mut out = self
            .0
            .into_inner()
            .map_err(|e| ArrowError::ExternalError(Box::new(e)))?;
        out.flush().map_err(Into::into)
    }
}

/// The aligned table: header, rule, rows, then `(N rows)`.
struct Table<W: Write> {
    out: W,
    names: Vec<String>,
    /// Numbers are right-aligned.
    right: Vec<bool>,
    /// Set by the first batch (or by the header alone at the end of an empty result).
    widths: Option<Vec<usize>>,
    rows: u64,
}

impl<W: Write> Table<W> {
    fn new(schema: SchemaRef, out: W) -> Self {
        Self {
            out,
            names: schema.fields().iter().map(|f| f.name().clone()).collect(),
            right: schema
                .fields()
                .iter()
                .map(|f| {
                    f.data_type().is_numeric() || matches!(f.data_type(), DataType::Decimal128(..))
                })
                .collect(),
            widths: None,
            rows: 0,
        }
    }

    fn header(&mut self, widths: &[usize]) -> std::io::Result<()> {
        let (names, right) = (self.names.clone(), self.right.clone());
        self.line(widths, &names, &right)?;
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        writeln!(self.out, "{}", rule.join("-+-"))
    }

    fn line(&mut self, widths: &[usize], cells: &[String], right: &[bool]) -> std::io::Result<()> {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                text.push_str(" | ");
            }
            let cell = fit(cell, if right[i] { usize::MAX } else { widths[i] });
            let pad = widths[i].saturating_sub(cell.chars().count());
            if right[i] {
                text.extend(std::iter::repeat_n(' ', pad));
                text.push_str(&cell);
            } else {
                text.push_str(&cell);
                if i + 1 < cells.len() {
                    text.extend(std::iter::repeat_n(' ', pad));
                }
            }
        }
        writeln!(self.out, "{text}")
    }
}

/// `cell` in at most `width` characters, control characters shown as escapes.
fn fit(cell: &str, width: usize) -> String {
    let clean: String = cell
        .chars()
        .flat_map(|c| match c {
            '\n' => vec!['\\', 'n'],
            '\r' => vec!['\\', 'r'],
            '\t' => vec!['\\', 't'],
            c if c.is_control() => vec!['?'],
            c => vec![c],
        })
        .collect();
    if clean.chars().count() <= width {
        return clean;
    }
    let mut cut: String = clean.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

impl<W: Write + Send> BatchWriter for Table<W> {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), ArrowError> {
        let options = FormatOptions::default().with_null("NULL");
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        let rows: Vec<Vec<String>> = (0..batch.num_rows())
            .map(|r| formatters.iter().map(|f| f.value(r).to_string()).collect())
            .collect();
        let widths = match self.widths.clone() {
            Some(w) => w,
            None => {
                let w: Vec<usize> = self
                    .names
                    .iter()
                    .enumerate()
                    .map(|(i, name)| {
                        rows.iter()
                            .map(|r| fit(&r[i], MAX_CELL).chars().count())
                            .chain([name.chars().count()])
                            .max()
                            .unwrap_or(0)
                            .min(MAX_CELL)
                    })
                    .collect();
                self.header(&w)?;
                self.widths = Some(w.clone());
                w
            }
        };
        let right = self.right.clone();
        for row in &rows {
            self.line(&widths, row, &right)?;
        }
        self.rows += rows.len() as u64;
        self.out.flush().map_err(Into::into)
    }

    fn finish(mut self: Box<Self>) -> Result<(), ArrowError> {
        if self.widths.is_none() {
            let w: Vec<usize> = self
                .names
                .iter()
                .map(|n| n.chars().count().min(MAX_CELL))
                .collect();
            self.header(&w)?;
        }
        let n = self.rows;
        writeln!(self.out, "({n} row{})", if n == 1 { "" } else { "s" })?;
        self.out.flush().map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    /// A `Write` whose bytes the test reads after the writer is gone.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn batch(ids: Vec<Option<i64>>, names: Vec<Option<&str>>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(StringArray::from(names)),
            ],
        )
        .unwrap()
    }

    fn render(format: Format, batches: &[RecordBatch]) -> String {
        let out = Shared::default();
        let mut w = writer(format, batches[0].schema(), out.clone()).unwrap();
        for b in batches {
            w.write(b).unwrap();
        }
        w.finish().unwrap();
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn the_table_takes_its_widths_from_the_first_batch_and_cuts_later_text() {
        let first = batch(vec![Some(7), None], vec![Some("Austin"), Some("a\tb")]);
        let second = batch(vec![Some(123456)], vec![Some("Philadelphia")]);
        let text = render(Format::Table, &[first, second]);
        let want = [
            "  id | name",
            "-----+-------",
            "   7 | Austin",
            "NULL | a\\tb",
            "123456 | Phila…",
            "(3 rows)",
        ];
        assert_eq!(text.lines().collect::<Vec<_>>(), want);
    }

    #[test]
    fn an_empty_result_still_has_its_header() {
        let empty = batch(vec![], vec![]);
        assert_eq!(
            render(Format::Table, std::slice::from_ref(&empty)),
            "id | name\n---+-----\n(0 rows)\n"
        );
        assert_eq!(render(Format::Csv, &[empty]), "id,name\n");
    }

    #[test]
    fn json_lines_keep_nulls() {
        let text = render(
            Format::JsonLines,
            &[batch(vec![Some(1), None], vec![None, Some("x")])],
        );
        assert_eq!(
            text,
            "{\"id\":1,\"name\":null}\n{\"id\":null,\"name\":\"x\"}\n"
        );
    }
}
