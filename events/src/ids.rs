//! Typed identifiers: `upld_…` for uploads, `data_…` for datasets, owners and event ids.
//!
//! An id is a 4-letter prefix, `_`, and 26 lowercase Crockford base32 characters that
//! encode a 128-bit UUID v7 (so ids sort by creation time). On the wire (postcard) an id
//! is its 16 raw bytes; in human-readable formats (JSON) it is its text form.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// Lowercase Crockford base32: no `i`, `l`, `o`, `u`, so ids read aloud without doubt.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// Characters after the prefix: 26 × 5 bits = 130 bits, the top two always zero.
pub const ID_CHARS: usize = 26;

/// Why a string is not an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{input:?} is not a {kind} id: expected `{prefix}_` followed by 26 base32 characters")]
    Malformed {
        kind: &'static str,
        prefix: &'static str,
        input: String,
    },
    #[error(
        "{input:?} is not a {kind} id: character {ch:?} at position {pos} is not lowercase base32"
    )]
    BadChar {
        kind: &'static str,
        input: String,
        ch: char,
        pos: usize,
    },
}

fn encode(value: u128) -> [u8; ID_CHARS] {
    let mut out = [0u8; ID_CHARS];
    for (i, slot) in out.iter_mut().enumerate() {
        let shift = 5 * (ID_CHARS - 1 - i);
        *slot = ALPHABET[((value >> shift) & 0x1f) as usize];
    }
    out
}

fn decode_char(c: u8) -> Option<u8> {
    ALPHABET.iter().position(|&a| a == c).map(|p| p as u8)
}

fn parse_body(kind: &'static str, prefix: &'static str, input: &str) -> Result<u128, IdError> {
    let malformed = || IdError::Malformed {
        kind,
        prefix,
        input: input.to_owned(),
    };
    let body = input
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .ok_or_else(malformed)?;
    if body.len() != ID_CHARS {
        return Err(malformed());
    }
    let mut value: u128 = 0;
    for (pos, c) in body.bytes().enumerate() {
        let digit = decode_char(c).ok_or_else(|| IdError::BadChar {
            kind,
            input: input.to_owned(),
            ch: c as char,
            pos: prefix.len() + 1 + pos,
        })?;
        // The first character carries only 3 significant bits.
        if pos == 0 && digit > 7 {
            return Err(malformed());
        }
        value = (value << 5) | u128::from(digit);
    }
    Ok(value)
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(u128);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A fresh, time-ordered id (UUID v7 underneath).
            pub fn new() -> Self {
                Self(Uuid::now_v7().as_u128())
            }

            pub const fn from_u128(value: u128) -> Self {
                Self(value)
            }

            pub const fn as_u128(self) -> u128 {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // One write of the whole text: `to_string` then allocates once, at
                // the id's length (projections turn ids to text several times per
                // event).
                const PREFIX_LEN: usize = $prefix.len();
                let mut text = [b'_'; PREFIX_LEN + 1 + ID_CHARS];
                text[..PREFIX_LEN].copy_from_slice($prefix.as_bytes());
                text[PREFIX_LEN + 1..].copy_from_slice(&encode(self.0));
                // The prefix is ASCII and encode only yields ASCII from ALPHABET.
                f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                parse_body($kind, $prefix, s).map(Self)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.collect_str(self)
                } else {
                    self.0.to_be_bytes().serialize(s)
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                if d.is_human_readable() {
                    let s = String::deserialize(d)?;
                    s.parse().map_err(serde::de::Error::custom)
                } else {
                    let bytes = <[u8; 16]>::deserialize(d)?;
                    Ok(Self(u128::from_be_bytes(bytes)))
                }
            }
        }
    };
}

prefixed_id!(
    /// One upload: a file handed to weir, from its first byte to its terminal event.
    UploadId,
    "upld",
    "upload"
);
prefixed_id!(
    /// One dataset in the catalog; its versions share this id.
    DatasetId,
    "data",
    "dataset"
);

impl DatasetId {
    /// The dataset an upload creates when it names no existing dataset. Derived, not
    /// random, so a redelivered `SchemaInferred` step picks the same id again.
    pub const fn for_upload(upload: UploadId) -> Self {
        Self(upload.as_u128())
    }
}

/// Who owns an upload or dataset and who acted: `[a-z0-9_-]`, 1 to 64 characters,
/// so it can stand as one token in a subject.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Owner(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an owner name: use 1 to 64 characters of a-z, 0-9, `_` and `-`")]
pub struct OwnerError(pub String);

impl Owner {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The actor of what weir does on no owner's behalf (the janitor deleting an object
    /// that no event names). Names beginning with `_` are weir's own: no token is
    /// issued for one ([`Owner::is_reserved`]).
    pub fn system() -> Self {
        Self("_weir".to_owned())
    }

    /// A name weir keeps for itself (it begins with `_`).
    pub fn is_reserved(&self) -> bool {
        self.0.starts_with('_')
    }
}

impl FromStr for Owner {
    type Err = OwnerError;
    fn from_str(s: &str) -> Result<Self, OwnerError> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(OwnerError(s.to_owned()))
        }
    }
}

impl<'de> Deserialize<'de> for Owner {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Owner({})", self.0)
    }
}

/// A UUID v7 naming one event; `causation_id` points at another one.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(pub Uuid);

impl EventId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// A second id derived from this one, the same every time: for a second record
    /// one event raises (e.g. its second notification).
    pub fn derived(self, n: u8) -> Self {
        Self(Uuid::from_u128(self.0.as_u128() ^ u128::from(n)))
    }
}

impl Default for EventId {
    fn default() -> Self {
        Self::new()
    }
}

impl FromStr for EventId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Uuid::parse_str(s)
            .map(Self)
            .map_err(|e| format!("{s:?} is not an event id (a UUID): {e}"))
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_has_the_documented_shape() {
        let id = UploadId::new();
        let text = id.to_string();
        assert_eq!(text.len(), 5 + ID_CHARS);
        assert!(text.starts_with("upld_"));
        assert_eq!(text.parse::<UploadId>(), Ok(id));
        assert_eq!(
            UploadId::from_u128(u128::MAX).to_string(),
            "upld_7zzzzzzzzzzzzzzzzzzzzzzzzz"
        );
        assert_eq!(
            UploadId::from_u128(0).to_string(),
            "upld_00000000000000000000000000"
        );
    }

    #[test]
    fn rejects_wrong_prefix_length_and_alphabet() {
        let good = UploadId::from_u128(42).to_string();
        assert!(good.replace("upld", "data").parse::<UploadId>().is_err());
        assert!(good[..good.len() - 1].parse::<UploadId>().is_err());
        let upper = good.to_uppercase();
        assert!(matches!(
            upper.parse::<UploadId>(),
            Err(IdError::Malformed { .. })
        ));
        let bad = format!("upld_{}", "0".repeat(25) + "u");
        assert!(matches!(
            bad.parse::<UploadId>(),
            Err(IdError::BadChar {
                ch: 'u',
                pos: 30,
                ..
            })
        ));
        // 26 characters can hold 130 bits; a leading digit above 7 would overflow 128.
        let overflow = format!("upld_8{}", "0".repeat(25));
        assert!(overflow.parse::<UploadId>().is_err());
    }

    #[test]
    fn ids_sort_by_creation_time() {
        let a = UploadId::new();
        let b = UploadId::new();
        assert!(a < b);
        assert!(a.to_string() < b.to_string());
    }

    #[test]
    fn owner_must_fit_in_a_subject_token() {
        assert!("acme-data_1".parse::<Owner>().is_ok());
        for bad in ["", "Acme", "a.b", "a b", "a*", "a>"] {
            assert!(bad.parse::<Owner>().is_err(), "{bad:?} accepted");
        }
        assert!("x".repeat(65).parse::<Owner>().is_err());
    }
}
