//! Column names as written to Parquet: sanitised so that every SQL engine takes them
//! unquoted, and de-duplicated. Only top-level columns are renamed; names inside
//! structs are kept as the source spells them.

/// Resolves source names to column names: lowercase, anything outside `[a-z0-9_]`
/// becomes `_`, a leading digit gets a `_` in front, an empty name becomes
/// `column_<n>` (1-based position), and a repeat gets `_2`, `_3`, ...
/// Returns `(name, original)` where `original` is set when the name changed.
pub fn resolve(source: &[String]) -> Vec<(String, Option<String>)> {
    let mut taken = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(source.len());
    for (i, original) in source.iter().enumerate() {
        let base = sanitise(original, i + 1);
        let mut name = base.clone();
        let mut n = 2;
        while !taken.insert(name.clone()) {
            name = format!("{base}_{n}");
            n += 1;
        }
        let changed = name != *original;
        out.push((name, changed.then(|| original.clone())));
    }
    out
}

fn sanitise(name: &str, position: usize) -> String {
    let mut s: String = name
        .trim()
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        return format!("column_{position}");
    }
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitises_and_deduplicates() {
        let src: Vec<String> = ["a", "A", "ISO3166-1-Alpha-3", "", "1st", "a_2", "ok", " "]
            .map(String::from)
            .to_vec();
        let got = resolve(&src);
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "a",
                "a_2",
                "iso3166_1_alpha_3",
                "column_4",
                "_1st",
                "a_2_2",
                "ok",
                "column_8"
            ]
        );
        assert_eq!(got[0].1, None);
        assert_eq!(got[1].1.as_deref(), Some("A"));
        assert_eq!(got[6].1, None);
    }
}
