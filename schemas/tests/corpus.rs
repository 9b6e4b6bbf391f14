//! Real files written by others: every Apache parquet-testing file converts or fails
//! with a clear reason (never a panic), and the country-codes data package's CSV gets
//! the types its declared frictionless schema says, except for documented reasons.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{options, run_file};
use weir_events::Format;
use weir_schemas::ConvertError;

const PARQUET_TESTING: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/corpus/parquet-testing"
);
const COUNTRY_CODES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/corpus/datapackages/country-codes"
);

/// Files of parquet-testing that fail, with a word of their reason that must appear in
/// the error. Everything else must convert. Keep in step with the list printed by the
/// test (run with `--nocapture`).
const EXPECTED_FAILURES: &[(&str, &str)] = &[
    // A dictionary page at offset 0 that arrow-rs misreads as the wrong list type.
    (
        "dict-page-offset-zero.parquet",
        "Expected list element type",
    ),
    // Very long map strings in one page claiming 1 GiB uncompressed: refused before it
    // is decoded (arrow-rs allocated the 1 GiB, then its 32-bit offsets overflowed).
    (
        "large_string_map.brotli.parquet",
        "claims 1073741828 bytes uncompressed, more than 67108864 (max_record_bytes",
    ),
    // Deliberately malformed dictionary page.
    ("nation.dict-malformed.parquet", "Invalid page header"),
];

#[test]
fn parquet_testing_converts_or_fails_clearly() {
    let mut entries: Vec<_> = std::fs::read_dir(PARQUET_TESTING)
        .expect("the corpus is checked in")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    entries.sort();
    assert!(
        entries.len() >= 60,
        "corpus missing? {} files",
        entries.len()
    );
    let mut ok = Vec::new();
    let mut failed = BTreeMap::new();
    for path in &entries {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        match run_file(path, &options(&name)) {
            Ok(run) => {
                let c = &run.converted;
                assert_eq!(c.format, Format::Parquet, "{name}");
                assert!(!c.schema.fields.is_empty(), "{name}: no columns");
                assert_eq!(c.statistics.columns.len(), c.schema.fields.len(), "{name}");
                let read_back: usize = run.batches.iter().map(|b| b.num_rows()).sum();
                assert_eq!(
                    read_back as u64, c.statistics.rows,
                    "{name}: rows read back"
                );
                println!(
                    "ok   {name}: {} columns, {} rows, rewritten={}",
                    c.schema.fields.len(),
                    c.statistics.rows,
                    c.rewritten
                );
                ok.push(name);
            }
            Err(e) => {
                assert!(
                    e.is_permanent(),
                    "{name}: a corrupt file is not transient: {e}"
                );
                assert!(
                    !matches!(e, ConvertError::Io { .. }),
                    "{name}: reported as local I/O: {e}"
                );
                assert!(
                    e.to_string().starts_with(&name),
                    "{name}: error must name the file: {e}"
                );
                println!("FAIL {name}: {e}");
                failed.insert(name, e.to_string());
            }
        }
    }
    println!("{} ok, {} failed", ok.len(), failed.len());
    assert!(
        ok.len() >= 62,
        "fewer parquet-testing files convert than before"
    );
    let expected: BTreeMap<&str, &str> = EXPECTED_FAILURES.iter().copied().collect();
    let names: Vec<&str> = failed.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        expected.keys().copied().collect::<Vec<_>>(),
        "the set of failing parquet-testing files changed"
    );
    for (name, reason) in &failed {
        let word = expected.get(name.as_str()).copied().unwrap_or_default();
        assert!(
            reason.contains(word),
            "{name}: expected {word:?} in {reason:?}"
        );
        assert!(!reason.contains("panicked"), "{name}: {reason}");
    }
}

/// The frictionless schema of country-codes: (name, type) per field, read from
/// `datapackage.yml`. `datapackage.json` in the corpus is empty (0 bytes), so the YAML
/// is read with a minimal reader for its `fields:` list (`- name:`/`type:` keys at the
/// field's indentation), which is all this test needs.
fn declared_fields(dir: &Path) -> Vec<(String, String)> {
    let json = std::fs::read_to_string(dir.join("datapackage.json")).unwrap_or_default();
    if let Ok(doc) = serde_json::from_str::<serde_json::Value>(&json) {
        let fields = doc["resources"][0]["schema"]["fields"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        return fields
            .iter()
            .map(|f| {
                (
                    f["name"].as_str().unwrap_or_default().to_owned(),
                    f["type"].as_str().unwrap_or("string").to_owned(),
                )
            })
            .collect();
    }
    let yaml = std::fs::read_to_string(dir.join("datapackage.yml")).expect("datapackage.yml");
    let mut out: Vec<(Option<String>, Option<String>)> = Vec::new();
    let mut in_fields = false;
    for line in yaml.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if trimmed == "fields:" {
            in_fields = true;
            continue;
        }
        if !in_fields {
            continue;
        }
        if indent <= 2 && !trimmed.is_empty() && !trimmed.starts_with("- ") {
            break; // left the schema
        }
        let (entry_start, kv) = match trimmed.strip_prefix("- ") {
            Some(rest) if indent == 4 => (true, rest),
            _ if indent == 6 => (false, trimmed),
            _ => continue,
        };
        if entry_start {
            out.push((None, None));
        }
        let Some(last) = out.last_mut() else { continue };
        if let Some(v) = kv.strip_prefix("name: ") {
            last.0 = Some(v.trim().trim_matches('"').trim_matches('\'').to_owned());
        } else if let Some(v) = kv.strip_prefix("type: ") {
            last.1 = Some(v.trim().to_owned());
        }
    }
    out.into_iter()
        .map(|(n, t)| (n.unwrap_or_default(), t.unwrap_or_else(|| "string".into())))
        .collect()
}

/// The Arrow types a frictionless type may be inferred as.
fn agrees(declared: &str, inferred: &str) -> bool {
    match declared {
        "string" => inferred == "Utf8",
        "integer" => inferred == "Int64",
        "number" => inferred == "Float64" || inferred == "Int64",
        "boolean" => inferred == "Boolean",
        "date" => inferred == "Date32",
        "datetime" => inferred.starts_with("Timestamp("),
        _ => false,
    }
}

/// Declared-versus-inferred disagreements and why they are right. All six are numeric
/// codes the package declares `string` but the CSV writes without leading zeros
/// (Afghanistan's ISO 3166 numeric code is 004, the file says `4`), so nothing in the
/// content tells them from numbers and Int64 keeps every value exactly. Code columns
/// that do keep their zeros (`ISO4217-currency_numeric_code`: `008`) are inferred as
/// text, in agreement. Declared integers with empty values (none here) would be
/// nullable Int64, in agreement too.
const COUNTRY_CODE_DISAGREEMENTS: &[(&str, &str, &str)] = &[
    (
        "ISO3166-1-numeric",
        "string",
        "written without zeros: 4, 248",
    ),
    ("GAUL", "string", "numeric ids, some empty"),
    ("Global Code", "string", "always 1"),
    (
        "Intermediate Region Code",
        "string",
        "M49 codes without zeros, mostly empty",
    ),
    ("Sub-region Code", "string", "M49 codes without zeros"),
    ("Region Code", "string", "M49 codes without zeros: 2, 9, 19"),
];

#[test]
fn country_codes_types_match_the_data_package() {
    let dir = Path::new(COUNTRY_CODES);
    let declared = declared_fields(dir);
    assert_eq!(declared.len(), 56, "fields read from the data package");
    let run = run_file(
        &dir.join("country-codes.csv"),
        &options("country-codes.csv"),
    )
    .expect("country-codes.csv converts");
    let c = &run.converted;
    assert_eq!(c.format, Format::Csv);
    assert_eq!(c.problem_count, 0, "{:?}", c.problems);
    assert_eq!(c.statistics.rows, 249);
    assert_eq!(c.schema.fields.len(), declared.len());
    let mut disagreements = Vec::new();
    for ((name, ty), field) in declared.iter().zip(&c.schema.fields) {
        let source = field.original_name.as_deref().unwrap_or(&field.name);
        assert_eq!(source, name, "columns in declared order");
        if !agrees(ty, &field.data_type) {
            println!("{name}: declared {ty}, inferred {}", field.data_type);
            disagreements.push((name.clone(), ty.clone(), field.data_type.clone()));
        }
    }
    let expected: Vec<(String, String, String)> = COUNTRY_CODE_DISAGREEMENTS
        .iter()
        .map(|(n, t, _)| {
            let field = c
                .schema
                .fields
                .iter()
                .find(|f| f.original_name.as_deref().unwrap_or(&f.name) == *n);
            (
                n.to_string(),
                t.to_string(),
                field.map(|f| f.data_type.clone()).unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(disagreements, expected);
}

/// Cut and scribbled-over copies of real Parquet files: each converts or fails with a
/// permanent error naming the file; a panic inside the reader is caught as an error.
#[test]
fn mangled_parquet_fails_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut outcomes = Vec::new();
    for name in [
        "alltypes_plain.parquet",
        "nested_structs.rust.parquet",
        "delta_byte_array.parquet",
        "nested_maps.snappy.parquet",
    ] {
        let bytes = std::fs::read(Path::new(PARQUET_TESTING).join(name)).expect("corpus file");
        let n = bytes.len();
        let mut variants: Vec<(String, Vec<u8>)> = vec![
            ("truncated".into(), bytes[..n / 2].to_vec()),
            ("footer-only".into(), bytes[n - n.min(64)..].to_vec()),
            ("magic-only".into(), b"PAR1PAR1".to_vec()),
        ];
        for (k, at) in [n / 8, n / 4, n / 3, n / 2].into_iter().enumerate() {
            let mut scribbled = bytes.clone();
            for (i, b) in scribbled[at..(at + 32).min(n - 8)].iter_mut().enumerate() {
                *b = (*b).wrapping_mul(31).wrapping_add(i as u8 ^ 0xa5);
            }
            variants.push((format!("scribbled-{k}"), scribbled));
        }
        for (how, data) in variants {
            let file = format!("{how}-{name}");
            let path = dir.path().join(&file);
            std::fs::write(&path, &data).expect("write variant");
            match run_file(&path, &options(&file)) {
                Ok(_) => outcomes.push(format!("ok   {file}")),
                Err(e) => {
                    assert!(e.is_permanent(), "{file}: {e}");
                    assert!(e.to_string().starts_with(&file), "{file}: {e}");
                    outcomes.push(format!("FAIL {file}: {e}"));
                }
            }
        }
    }
    for o in &outcomes {
        println!("{o}");
    }
    let failures = outcomes.iter().filter(|o| o.starts_with("FAIL")).count();
    // Truncations and bare magic can never be read.
    assert!(
        failures >= 12,
        "{failures} failures:\n{}",
        outcomes.join("\n")
    );
}
