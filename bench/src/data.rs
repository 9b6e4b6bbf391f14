//! The benchmark inputs, generated from a fixed seed so every run (and every machine)
//! converts byte-identical files: a 10-column CSV, an NDJSON file with a nested object,
//! the CSV with non-ASCII text as UTF-8 and as Windows-1252, and small CSV files for the
//! pipeline.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};

/// The seed of every generated file.
pub const SEED: u64 = 0x005e_ed0f_3e1a;

/// splitmix64: tiny, fast, and the same everywhere (no dependency whose stream could
/// change between versions).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const COUNTRIES: [&str; 12] = [
    "DE", "FR", "US", "GB", "NL", "SE", "JP", "BR", "IN", "ES", "IT", "PL",
];
const STATUSES: [&str; 5] = ["new", "paid", "shipped", "cancelled", "returned"];

fn word(rng: &mut Rng, out: &mut String) {
    let len = 5 + rng.below(8) as usize;
    for _ in 0..len {
        out.push((b'a' + rng.below(26) as u8) as char);
    }
}

/// `YYYY-MM-DD?HH:MM:SS` within 2023–2024, `sep` between date and time.
fn timestamp(rng: &mut Rng, sep: char, out: &mut String) {
    use std::fmt::Write as _;
    let y = 2023 + rng.below(2);
    let m = 1 + rng.below(12);
    let d = 1 + rng.below(28);
    let secs = rng.below(86_400);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}{sep}{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
}

/// One CSV row of the 10 columns (no newline).
fn csv_row(rng: &mut Rng, id: u64, row: &mut String) {
    use std::fmt::Write as _;
    row.clear();
    let user = 1 + rng.below(1_000_000);
    let cents = rng.below(10_000_000);
    let score = rng.below(1_000_000);
    let _ = write!(
        row,
        "{id},{user},{}.{:02},0.{score:06},",
        cents / 100,
        cents % 100
    );
    timestamp(rng, ' ', row);
    row.push(',');
    timestamp(rng, 'T', row);
    row.push_str("Z,");
    row.push_str(COUNTRIES[rng.below(COUNTRIES.len() as u64) as usize]);
    row.push(',');
    row.push_str(STATUSES[rng.below(STATUSES.len() as u64) as usize]);
    row.push(',');
    word(rng, row);
    row.push(',');
    // The nullable column: empty (null) in about 30 % of rows.
    if rng.below(10) >= 3 {
        let _ = write!(row, "note-{}", rng.below(100_000));
    }
}

pub const CSV_HEADER: &str =
    "id,user_id,amount,score,created_at,updated_at,country,status,name,comment";

/// Writes a CSV of at least `bytes` bytes; returns the rows written.
pub fn write_csv(path: &Path, bytes: u64, seed: u64) -> Result<u64> {
    let mut rng = Rng::new(seed);
    let mut out = BufWriter::with_capacity(
        1 << 20,
        File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    writeln!(out, "{CSV_HEADER}")?;
    let mut written = CSV_HEADER.len() as u64 + 1;
    let mut row = String::with_capacity(256);
    let mut id = 0;
    while written < bytes {
        id += 1;
        csv_row(&mut rng, id, &mut row);
        row.push('\n');
        out.write_all(row.as_bytes())?;
        written += row.len() as u64;
    }
    out.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(id)
}

/// Phrases the encoding inputs put in the `comment` column: every non-ASCII character
/// in them is one Windows-1252 has (accents, typographic quotes and dashes, the euro).
const ACCENTED: [&str; 6] = [
    "Müller – «ok»",
    "café au lait, 3 €",
    "„Grüße“ aus Köln",
    "naïve ‘quote’ déjà vu",
    "São Paulo … Zürich",
    "Ærø — Øresund",
];

/// The orders CSV with non-ASCII text, written twice from the same rows: as UTF-8 to
/// `utf8` and transcoded to Windows-1252 to `windows_1252`; at least `bytes` bytes of
/// UTF-8. Returns the rows written.
pub fn write_csv_two_encodings(
    utf8: &Path,
    windows_1252: &Path,
    bytes: u64,
    seed: u64,
) -> Result<u64> {
    let create = |path: &Path| -> Result<BufWriter<File>> {
        Ok(BufWriter::with_capacity(
            1 << 20,
            File::create(path).with_context(|| format!("creating {}", path.display()))?,
        ))
    };
    let (mut a, mut b) = (create(utf8)?, create(windows_1252)?);
    let mut rng = Rng::new(seed);
    writeln!(a, "{CSV_HEADER}")?;
    writeln!(b, "{CSV_HEADER}")?;
    let mut written = CSV_HEADER.len() as u64 + 1;
    let mut row = String::with_capacity(256);
    let mut id = 0;
    while written < bytes {
        id += 1;
        csv_row(&mut rng, id, &mut row);
        // The comment (last column) becomes a quoted phrase in two rows of three.
        if let Some(at) = row.rfind(',')
            && rng.below(3) < 2
        {
            let phrase = ACCENTED[rng.below(ACCENTED.len() as u64) as usize];
            row.truncate(at + 1);
            row.push('"');
            row.push_str(phrase);
            row.push('"');
        }
        row.push('\n');
        a.write_all(row.as_bytes())?;
        let (encoded, _, unmappable) = encoding_rs::WINDOWS_1252.encode(&row);
        if unmappable {
            bail!("{row:?} has a character Windows-1252 lacks");
        }
        b.write_all(&encoded)?;
        written += row.len() as u64;
    }
    a.flush()?;
    b.flush()?;
    Ok(id)
}

/// Writes NDJSON of at least `bytes` bytes, each record with a nested `user` object
/// and a nullable `note`; returns the records written.
pub fn write_ndjson(path: &Path, bytes: u64, seed: u64) -> Result<u64> {
    use std::fmt::Write as _;
    let mut rng = Rng::new(seed);
    let mut out = BufWriter::with_capacity(
        1 << 20,
        File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    let mut written = 0u64;
    let mut row = String::with_capacity(512);
    let mut id = 0;
    while written < bytes {
        id += 1;
        row.clear();
        let cents = rng.below(10_000_000);
        let _ = write!(row, "{{\"id\":{id},\"ts\":\"");
        timestamp(&mut rng, 'T', &mut row);
        let _ = write!(
            row,
            "Z\",\"amount\":{}.{:02},\"user\":{{\"id\":{},\"name\":\"",
            cents / 100,
            cents % 100,
            1 + rng.below(1_000_000)
        );
        word(&mut rng, &mut row);
        let _ = write!(
            row,
            "\",\"country\":\"{}\",\"vip\":{}}},\"status\":\"{}\",\"note\":",
            COUNTRIES[rng.below(COUNTRIES.len() as u64) as usize],
            rng.below(10) == 0,
            STATUSES[rng.below(STATUSES.len() as u64) as usize],
        );
        if rng.below(10) >= 3 {
            let _ = write!(row, "\"note-{}\"", rng.below(100_000));
        } else {
            row.push_str("null");
        }
        row.push_str("}\n");
        out.write_all(row.as_bytes())?;
        written += row.len() as u64;
    }
    out.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(id)
}

/// Writes `count` small CSV files of 1–10 KB into `dir`; returns their paths.
pub fn write_small_files(dir: &Path, count: usize, seed: u64) -> Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut rng = Rng::new(seed);
    let mut row = String::with_capacity(256);
    let mut paths = Vec::with_capacity(count);
    for n in 0..count {
        let target = 1024 + rng.below(9 * 1024);
        let path = dir.join(format!("small_{n:05}.csv"));
        let mut text = String::with_capacity(target as usize + 256);
        text.push_str(CSV_HEADER);
        text.push('\n');
        let mut id = 0;
        while (text.len() as u64) < target {
            id += 1;
            csv_row(&mut rng, id, &mut row);
            text.push_str(&row);
            text.push('\n');
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        paths.push(path);
    }
    Ok(paths)
}
