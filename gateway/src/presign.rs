//! Presigned part URLs: an HMAC-SHA256 over the method, upload id, part number, owner
//! and expiry, so a part URL works without a token, for that one part of that one
//! upload, until it expires, and any change to it breaks the signature.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use weir_events::{Owner, UploadId};

type HmacSha256 = Hmac<Sha256>;

/// What a part URL grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant<'a> {
    pub method: &'a str,
    pub upload: UploadId,
    pub part: u32,
    pub owner: &'a Owner,
    /// Unix seconds.
    pub expires: i64,
}

impl Grant<'_> {
    fn message(&self) -> String {
        format!(
            "{}\n{}\n{}\n{}\n{}",
            self.method, self.upload, self.part, self.owner, self.expires
        )
    }

    fn mac(&self, key: &[u8]) -> HmacSha256 {
        // HMAC accepts keys of any length; new_from_slice cannot fail for it.
        let mut mac = match HmacSha256::new_from_slice(key) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        mac.update(self.message().as_bytes());
        mac
    }

    /// The hex signature.
    pub fn sign(&self, key: &[u8]) -> String {
        hex::encode(self.mac(key).finalize().into_bytes())
    }

    /// Constant-time check of a hex signature.
    pub fn verify(&self, key: &[u8], signature: &str) -> bool {
        match hex::decode(signature) {
            Ok(bytes) => self.mac(key).verify_slice(&bytes).is_ok(),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_change_breaks_the_signature() {
        let owner: Owner = "acme".parse().unwrap();
        let other: Owner = "evil".parse().unwrap();
        let upload = UploadId::from_u128(7);
        let grant = Grant {
            method: "PUT",
            upload,
            part: 2,
            owner: &owner,
            expires: 1_900_000_000,
        };
        let key = b"k";
        let sig = grant.sign(key);
        assert!(grant.verify(key, &sig));
        assert!(!grant.verify(b"other key", &sig));
        assert!(
            !Grant {
                part: 3,
                ..grant.clone()
            }
            .verify(key, &sig)
        );
        assert!(
            !Grant {
                method: "GET",
                ..grant.clone()
            }
            .verify(key, &sig)
        );
        assert!(
            !Grant {
                expires: 1_900_000_001,
                ..grant.clone()
            }
            .verify(key, &sig)
        );
        assert!(
            !Grant {
                owner: &other,
                ..grant.clone()
            }
            .verify(key, &sig)
        );
        assert!(
            !Grant {
                upload: UploadId::from_u128(8),
                ..grant.clone()
            }
            .verify(key, &sig)
        );
        assert!(!grant.verify(key, "zz"));
        assert!(!grant.verify(key, &sig[..10]));
    }
}
