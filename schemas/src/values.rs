//! Text values of delimited files: what type a value looks like, how column types widen,
//! and the parsers that turn text into Arrow's native values (dates, timestamps).
//!
//! Rules that matter to users:
//! - only the empty string is null; other values are trimmed before a type is guessed,
//!   so a blank (`" "`) is null in a numeric column but kept as is in a text column;
//! - a number with a leading zero and more than one digit (`007`, `01.5`) is text: codes
//!   such as zip, FIPS or ISO numeric keep their zeros;
//! - an integer too large for Int64 is text, not Float64, so that no digit is lost;
//! - a timestamp with more than microsecond precision is text unless the extra digits
//!   are zeros, for the same reason.

use arrow::datatypes::{DataType, TimeUnit};

/// The type of a column of a delimited file, ordered by the widening lattice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// No non-null value seen yet; written as Utf8 if it stays so.
    Null,
    Bool,
    Int,
    Float,
    Date,
    Timestamp,
    TimestampTz,
    Utf8,
    /// Only from a column override: `decimal(precision, scale)`.
    Decimal(u8, i8),
}

impl Kind {
    /// The narrowest kind that holds both: int → float → utf8, date → timestamp → utf8,
    /// anything else → utf8.
    pub fn join(self, other: Kind) -> Kind {
        use Kind::*;
        match (self, other) {
            (a, b) if a == b => a,
            (Null, x) | (x, Null) => x,
            (Int, Float) | (Float, Int) => Float,
            (Date, Timestamp) | (Timestamp, Date) => Timestamp,
            _ => Utf8,
        }
    }

    pub fn data_type(self) -> DataType {
        match self {
            Kind::Null | Kind::Utf8 => DataType::Utf8,
            Kind::Bool => DataType::Boolean,
            Kind::Int => DataType::Int64,
            Kind::Float => DataType::Float64,
            Kind::Date => DataType::Date32,
            Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Kind::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Kind::Decimal(p, s) => DataType::Decimal128(p, s),
        }
    }

    /// A column override's type by name: `utf8`, `int64`, `float64`, `boolean`, `date`,
    /// `timestamp`, `timestamptz`, `decimal(P,S)` (and the usual aliases).
    pub fn from_override(name: &str) -> Result<Kind, String> {
        let n = name.trim().to_ascii_lowercase().replace(' ', "");
        let kind = match n.as_str() {
            "utf8" | "text" | "string" | "varchar" => Kind::Utf8,
            "int64" | "int" | "integer" | "bigint" => Kind::Int,
            "float64" | "float" | "double" | "real" => Kind::Float,
            "bool" | "boolean" => Kind::Bool,
            "date" | "date32" => Kind::Date,
            "timestamp" => Kind::Timestamp,
            "timestamptz" | "timestamp(utc)" => Kind::TimestampTz,
            other => {
                let inner = other
                    .strip_prefix("decimal(")
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(|| {
                        format!(
                            "unknown type {name:?}: use utf8, int64, float64, boolean, date, timestamp, timestamptz or decimal(P,S)"
                        )
                    })?;
                let (p, s) = inner.split_once(',').ok_or_else(|| {
                    format!("{name:?}: decimal needs a precision and a scale, e.g. decimal(12,2)")
                })?;
                let p: u8 = p
                    .parse()
                    .map_err(|_| format!("{name:?}: precision is 1 to 38"))?;
                let s: i8 = s
                    .parse()
                    .map_err(|_| format!("{name:?}: scale is 0 to the precision"))?;
                if !(1..=38).contains(&p) || s < 0 || s as u8 > p {
                    return Err(format!(
                        "{name:?}: precision is 1 to 38, scale 0 to the precision"
                    ));
                }
                Kind::Decimal(p, s)
            }
        };
        Ok(kind)
    }
}

/// `text` as a decimal of `precision` digits, `scale` of them after the point, as the
/// scaled integer; `None` when it has more digits than fit (no rounding: a value that
/// would change is not a decimal of that type).
pub fn parse_decimal(text: &str, precision: u8, scale: i8) -> Option<i128> {
    let t = text.trim();
    let (neg, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let frac = frac.trim_end_matches('0');
    let scale = scale as usize;
    if frac.len() > scale {
        return None;
    }
    let int = int.trim_start_matches('0');
    if int.len() + scale > precision as usize {
        return None;
    }
    let mut v: i128 = 0;
    for b in int.bytes().chain(frac.bytes()) {
        v = v * 10 + i128::from(b - b'0');
    }
    for _ in frac.len()..scale {
        v *= 10;
    }
    Some(if neg { -v } else { v })
}

/// The narrowest kind `raw` fits. Only the empty (or blank) value is `Null`.
pub fn classify(raw: &str) -> Kind {
    let v = raw.trim();
    if v.is_empty() {
        return Kind::Null;
    }
    if v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false") {
        return Kind::Bool;
    }
    let b = v.as_bytes();
    if (b[0].is_ascii_digit() || matches!(b[0], b'+' | b'-' | b'.'))
        && let Some(kind) = classify_number(v)
    {
        return kind;
    }
    if b.len() >= 10 && b[4] == b'-' {
        if b.len() == 10 {
            if parse_date(v).is_some() {
                return Kind::Date;
            }
        } else if let Some((_, zoned)) = parse_timestamp(v) {
            return if zoned {
                Kind::TimestampTz
            } else {
                Kind::Timestamp
            };
        }
    }
    Kind::Utf8
}

fn classify_number(v: &str) -> Option<Kind> {
    number(v).map(|n| match n {
        Number::Int(_) => Kind::Int,
        Number::Float(_) => Kind::Float,
    })
}

/// A number as the rules above read it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Number {
    Int(i64),
    Float(f64),
}

/// Parses `v` (already trimmed) once: the shape check and the value in one go, so a
/// conversion parses each number once rather than once to classify and once to store.
fn number(v: &str) -> Option<Number> {
    let b = v.as_bytes();
    let body = match b.first()? {
        b'+' | b'-' => &b[1..],
        _ => b,
    };
    let int_digits = body.iter().take_while(|c| c.is_ascii_digit()).count();
    if int_digits > 1 && body[0] == b'0' {
        return None; // a code with a leading zero: text
    }
    if int_digits == body.len() {
        if int_digits == 0 {
            return None;
        }
        // Too large for Int64: text, so that no digit is lost.
        return v.parse::<i64>().ok().map(Number::Int);
    }
    let mut rest = &body[int_digits..];
    let mut frac_digits = 0;
    if rest.first() == Some(&b'.') {
        frac_digits = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        rest = &rest[1 + frac_digits..];
    }
    if int_digits + frac_digits == 0 {
        return None;
    }
    if let Some((&e, exp)) = rest.split_first() {
        if e != b'e' && e != b'E' {
            return None;
        }
        let exp = match exp.first() {
            Some(b'+' | b'-') => &exp[1..],
            _ => exp,
        };
        if exp.is_empty() || !exp.iter().all(u8::is_ascii_digit) {
            return None;
        }
    }
    match v.parse::<f64>() {
        Ok(f) if f.is_finite() => Some(Number::Float(f)),
        _ => None,
    }
}

/// The common numbers — an optional sign, at most 15 digits, at most one `.` between
/// digits, nothing around them — read in one pass; `None` for anything else, which
/// [`number`] then reads. The result is `number`'s: a mantissa below 2^53 divided by
/// an exact power of ten is correctly rounded, as `str::parse::<f64>` is.
#[inline]
fn plain_number(b: &[u8]) -> Option<Number> {
    const POW10: [f64; 16] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    ];
    let (negative, body) = match b.first()? {
        b'-' => (true, &b[1..]),
        b'+' => (false, &b[1..]),
        _ => (false, b),
    };
    if body.is_empty() || body.len() > 16 {
        return None;
    }
    let mut mantissa: i64 = 0;
    let mut dot = None;
    for (k, &c) in body.iter().enumerate() {
        match c {
            b'0'..=b'9' => mantissa = mantissa * 10 + i64::from(c - b'0'),
            b'.' if dot.is_none() => dot = Some(k),
            _ => return None,
        }
    }
    let int_digits = dot.unwrap_or(body.len());
    let frac_digits = body.len() - int_digits - usize::from(dot.is_some());
    if int_digits == 0 || (int_digits > 1 && body[0] == b'0') || int_digits + frac_digits > 15 {
        return None;
    }
    match dot {
        None => Some(Number::Int(if negative { -mantissa } else { mantissa })),
        Some(_) if frac_digits == 0 => None,
        Some(_) => {
            let v = mantissa as f64 / POW10[frac_digits];
            Some(Number::Float(if negative { -v } else { v }))
        }
    }
}

pub fn parse_bool(v: &str) -> Option<bool> {
    let v = v.trim();
    if v.eq_ignore_ascii_case("true") {
        Some(true)
    } else if v.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

pub fn parse_int(v: &str) -> Option<i64> {
    if let Some(Number::Int(i)) = plain_number(v.as_bytes()) {
        return Some(i);
    }
    match number(v.trim())? {
        Number::Int(i) => Some(i),
        Number::Float(_) => None,
    }
}

pub fn parse_float(v: &str) -> Option<f64> {
    match plain_number(v.as_bytes()) {
        Some(Number::Int(i)) => return Some(i as f64),
        Some(Number::Float(f)) => return Some(f),
        None => {}
    }
    match number(v.trim())? {
        // The same f64 as parsing the digits: an integer's decimal text is exact, and
        // both round to nearest.
        Number::Int(i) => Some(i as f64),
        Number::Float(f) => Some(f),
    }
}

/// Days since 1970-01-01 for a valid `YYYY-MM-DD`.
pub fn parse_date(v: &str) -> Option<i32> {
    let b = trimmed(v).as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y = digits(&b[0..4])?;
    let m = digits(&b[5..7])?;
    let d = digits(&b[8..10])?;
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    i32::try_from(days_from_civil(y, m, d)).ok()
}

/// Microseconds since the epoch, and whether the text carried a zone (then the value is
/// the UTC instant). Accepts `YYYY-MM-DD[T ]HH:MM[:SS[.f]]` and an optional `Z`, `UTC`,
/// `±HH`, `±HHMM` or `±HH:MM`, optionally after one space.
pub fn parse_timestamp(v: &str) -> Option<(i64, bool)> {
    let v = trimmed(v);
    let b = v.as_bytes();
    if b.len() < 16 || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' {
        return None;
    }
    let days = i64::from(parse_date(&v[..10])?);
    let h = digits(&b[11..13])?;
    let mi = digits(&b[14..16])?;
    let mut rest = &b[16..];
    let mut s = 0;
    let mut micros = 0i64;
    if rest.first() == Some(&b':') && rest.len() >= 3 {
        s = digits(&rest[1..3])?;
        rest = &rest[3..];
        if rest.first() == Some(&b'.') {
            let n = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 {
                return None;
            }
            let frac = &rest[1..1 + n];
            if n > 6 && frac[6..].iter().any(|&c| c != b'0') {
                return None; // below a microsecond: keep the text rather than lose digits
            }
            for i in 0..6 {
                micros = micros * 10 + frac.get(i).map_or(0, |c| i64::from(c - b'0'));
            }
            rest = &rest[1 + n..];
        }
    }
    if h > 23 || mi > 59 || s > 59 {
        return None;
    }
    if rest.first() == Some(&b' ') {
        rest = &rest[1..];
    }
    let offset_secs = match rest {
        [] => None,
        [b'Z' | b'z'] | [b'U', b'T', b'C'] => Some(0),
        [sign @ (b'+' | b'-'), tail @ ..] => {
            let (oh, om) = match tail {
                [a, b] => (digits(&[*a, *b])?, 0),
                [a, b, c, d] => (digits(&[*a, *b])?, digits(&[*c, *d])?),
                [a, b, b':', c, d] => (digits(&[*a, *b])?, digits(&[*c, *d])?),
                _ => return None,
            };
            if oh > 23 || om > 59 {
                return None;
            }
            let secs = oh * 3600 + om * 60;
            Some(if *sign == b'-' { -secs } else { secs })
        }
        _ => return None,
    };
    let local = ((days * 86_400 + h * 3600 + mi * 60 + s) * 1_000_000) + micros;
    Some(match offset_secs {
        None => (local, false),
        Some(off) => (local - off * 1_000_000, true),
    })
}

/// `v.trim()`, skipped when `v` starts and ends with a printable ASCII byte (most values:
/// the Unicode-aware trim is a visible cost per value).
#[inline]
fn trimmed(v: &str) -> &str {
    let printable = |c: Option<&u8>| c.is_some_and(|&c| c > b' ' && c < 0x80);
    let b = v.as_bytes();
    if printable(b.first()) && printable(b.last()) {
        v
    } else {
        v.trim()
    }
}

fn digits(b: &[u8]) -> Option<i64> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0i64, |acc, c| acc * 10 + i64::from(c - b'0')))
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Howard Hinnant's `days_from_civil`.
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Howard Hinnant's `civil_from_days`.
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// ISO 8601 date for days since the epoch.
pub fn format_date(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// ISO 8601 timestamp for microseconds since the epoch; `zoned` appends `Z`.
pub fn format_timestamp(micros: i64, zoned: bool) -> String {
    let days = micros.div_euclid(86_400_000_000);
    let rem = micros.rem_euclid(86_400_000_000);
    let (secs, frac) = (rem / 1_000_000, rem % 1_000_000);
    let mut out = format!(
        "{}T{:02}:{:02}:{:02}",
        format_date(days),
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if frac != 0 {
        out.push_str(&format!(".{frac:06}"));
    }
    if zoned {
        out.push('Z');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        for (v, k) in [
            ("", Kind::Null),
            ("  ", Kind::Null),
            ("TRUE", Kind::Bool),
            ("42", Kind::Int),
            ("-0", Kind::Int),
            ("0", Kind::Int),
            ("007", Kind::Utf8),
            ("01.5", Kind::Utf8),
            ("0.5", Kind::Float),
            (".5", Kind::Float),
            ("1e3", Kind::Float),
            ("1e", Kind::Utf8),
            ("nan", Kind::Utf8),
            ("99999999999999999999", Kind::Utf8),
            ("2024-02-29", Kind::Date),
            ("2023-02-29", Kind::Utf8),
            ("2024-01-02 03:04:05", Kind::Timestamp),
            ("2024-01-02T03:04", Kind::Timestamp),
            ("2024-01-02T03:04:05.123456Z", Kind::TimestampTz),
            ("2024-01-02T03:04:05+02:00", Kind::TimestampTz),
            ("2024-01-02T03:04:05.1234567", Kind::Utf8),
            ("2024-01-02T03:04:05.1234560", Kind::Timestamp),
            ("2024-01-02T25:04:05", Kind::Utf8),
            ("1-684", Kind::Utf8),
        ] {
            assert_eq!(classify(v), k, "{v:?}");
        }
    }

    #[test]
    fn plain_numbers_read_as_number_reads_them() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut texts: Vec<String> = [
            "0",
            "-0",
            "+0",
            "0.0",
            "-0.0",
            "7",
            "-12",
            "+3.5",
            "00",
            "01.5",
            "0.10",
            "1.",
            ".5",
            "999999999999999",
            "9999999999999999",
            "123456789012.345",
            "1.2.3",
            "-",
            "+",
            "",
            "0.000000000000001",
            "4503599627370497.5",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for _ in 0..20_000 {
            let digits = 1 + next() % 16;
            let mut s = String::new();
            if next() % 3 == 0 {
                s.push('-');
            }
            let dot = next() % (digits + 2);
            for k in 0..digits {
                if k == dot && k > 0 {
                    s.push('.');
                }
                s.push(char::from(b'0' + (next() % 10) as u8));
            }
            texts.push(s);
        }
        for t in &texts {
            if let Some(fast) = plain_number(t.as_bytes()) {
                let slow = number(t);
                match (fast, slow) {
                    (Number::Float(a), Some(Number::Float(b))) => {
                        assert_eq!(a.to_bits(), b.to_bits(), "{t}")
                    }
                    (a, b) => assert_eq!(Some(a), b, "{t}"),
                }
            }
            let slow_int = match number(t) {
                Some(Number::Int(i)) => Some(i),
                _ => None,
            };
            assert_eq!(parse_int(t), slow_int, "{t}");
            let slow_float = match number(t) {
                Some(Number::Int(i)) => Some(i as f64),
                Some(Number::Float(f)) => Some(f),
                None => None,
            };
            assert_eq!(
                parse_float(t).map(f64::to_bits),
                slow_float.map(f64::to_bits),
                "{t}"
            );
        }
    }

    #[test]
    fn timestamps_and_dates_round_trip() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("1969-12-31"), Some(-1));
        assert_eq!(
            format_date(i64::from(parse_date("2000-02-29").unwrap_or(0))),
            "2000-02-29"
        );
        let (t, z) = parse_timestamp("2024-01-02T03:04:05+02:00").unwrap_or((0, false));
        assert!(z);
        assert_eq!(format_timestamp(t, true), "2024-01-02T01:04:05Z");
        let (t, _) = parse_timestamp("1969-12-31 23:59:59.5").unwrap_or((0, true));
        assert_eq!(format_timestamp(t, false), "1969-12-31T23:59:59.500000");
    }
}
