//! API tokens: issued as a `TokenCreated` event carrying only the token's sha256, so the
//! log never holds a usable secret; the gateway's table of valid tokens is a fold of the
//! `TokenCreated` and `TokenRevoked` events.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256 as Hasher};
use tokio::sync::Mutex;
use weir_events::{
    Aggregate, Envelope, Event, EventId, EventKind, Owner, Sha256, Subject, TokenCreated, UploadId,
};
use weir_journal::{AppendOutcome, Expect, Journal, Recorded};

/// Every token starts with this, so secret scanners and humans recognise one.
pub const TOKEN_PREFIX: &str = "wt_";
/// The public id is the token's first characters (prefix included).
const TOKEN_ID_LEN: usize = 10;

/// Owner-level events are not part of any upload; their correlation id is this one.
pub const NO_UPLOAD: UploadId = UploadId::from_u128(0);

pub fn hash(token: &str) -> Sha256 {
    Sha256(Hasher::digest(token.as_bytes()).into())
}

/// A token just issued: the secret is shown once and never stored.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub owner: Owner,
    pub token: String,
    pub token_id: String,
    pub seq: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("no randomness from the operating system: {0}")]
    Random(String),
    #[error(transparent)]
    Append(#[from] weir_journal::AppendError),
    #[error("the token's event was not stored (message id collision); try again")]
    NotStored,
    #[error(
        "{0} is not an owner a token can be issued to: names beginning with `_` are weir's own"
    )]
    Reserved(Owner),
}

/// Issues a token for `owner`: appends `TokenCreated` with the token's sha256 only.
pub async fn create_token(journal: &Journal, owner: &Owner) -> Result<IssuedToken, TokenError> {
    if owner.is_reserved() {
        return Err(TokenError::Reserved(owner.clone()));
    }
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| TokenError::Random(e.to_string()))?;
    let token = format!("{TOKEN_PREFIX}{}", hex::encode(secret));
    let token_id = token[..TOKEN_ID_LEN].to_owned();
    // The causation is a fresh id: two tokens for one owner are two distinct appends
    // (the message id would otherwise be the bare subject and the second one dropped).
    let envelope = Envelope::new(
        Aggregate::Owner(owner.clone()),
        owner.clone(),
        NO_UPLOAD,
        Some(EventId::new()),
        Event::TokenCreated(TokenCreated {
            owner: owner.clone(),
            token_id: token_id.clone(),
            sha256: hash(&token),
        }),
    );
    match journal.append(&envelope, Expect::Any).await? {
        AppendOutcome::Appended {
            seq,
            duplicate: false,
        } => Ok(IssuedToken {
            owner: owner.clone(),
            token,
            token_id,
            seq,
        }),
        _ => Err(TokenError::NotStored),
    }
}

#[derive(Debug, Clone)]
struct Entry {
    owner: Owner,
    token_id: String,
}

#[derive(Default)]
struct Table {
    by_hash: HashMap<Sha256, Entry>,
    revoked: std::collections::HashSet<(String, String)>,
}

impl Table {
    fn apply(&mut self, r: &Recorded) {
        match &r.envelope.event {
            Event::TokenCreated(t)
                if !self
                    .revoked
                    .contains(&(t.owner.to_string(), t.token_id.clone())) =>
            {
                self.by_hash.insert(
                    t.sha256,
                    Entry {
                        owner: t.owner.clone(),
                        token_id: t.token_id.clone(),
                    },
                );
            }
            Event::TokenRevoked(t) => {
                self.revoked
                    .insert((t.owner.to_string(), t.token_id.clone()));
                self.by_hash
                    .retain(|_, e| !(e.owner == t.owner && e.token_id == t.token_id));
            }
            _ => {}
        }
    }
}

/// Which owner a bearer token belongs to. Kept current by the log watcher; a token
/// not (yet) in the table triggers one re-read of the token events, so a token
/// created a moment ago works on its first request.
#[derive(Clone)]
pub struct TokenTable {
    journal: Journal,
    table: Arc<RwLock<Table>>,
    /// Single flight for re-reads: a burst of unknown tokens costs one read.
    reload: Arc<Mutex<u64>>,
}

impl TokenTable {
    pub fn new(journal: Journal) -> Self {
        Self {
            journal,
            table: Arc::default(),
            reload: Arc::new(Mutex::new(0)),
        }
    }

    /// Applies one event from the log watcher.
    pub fn apply(&self, r: &Recorded) {
        if let Ok(mut t) = self.table.write() {
            t.apply(r);
        }
    }

    fn lookup(&self, h: &Sha256) -> Option<Owner> {
        self.table
            .read()
            .ok()
            .and_then(|t| t.by_hash.get(h).map(|e| e.owner.clone()))
    }

    /// The owner of `token`, or `None` when it is unknown or revoked.
    pub async fn owner_of(&self, token: &str) -> Result<Option<Owner>, weir_journal::ReadError> {
        let h = hash(token);
        if let Some(owner) = self.lookup(&h) {
            return Ok(Some(owner));
        }
        let generation = *self.reload.lock().await;
        let mut guard = self.reload.lock().await;
        if *guard == generation {
            // Nobody re-read since this request looked: do it now.
            let mut fresh = Table::default();
            let mut events = Vec::new();
            for kind in [EventKind::TokenCreated, EventKind::TokenRevoked] {
                events.extend(self.journal.read_all(Subject::kind_filter(kind)).await?);
            }
            events.sort_by_key(|r| r.seq);
            for r in &events {
                fresh.apply(r);
            }
            if let Ok(mut t) = self.table.write() {
                // Keep what the watcher added meanwhile; the fresh read wins on conflicts.
                for (k, v) in fresh.by_hash {
                    t.by_hash.insert(k, v);
                }
                for r in fresh.revoked {
                    t.by_hash
                        .retain(|_, e| !(e.owner.as_str() == r.0 && e.token_id == r.1));
                    t.revoked.insert(r);
                }
            }
            *guard += 1;
        }
        drop(guard);
        Ok(self.lookup(&h))
    }
}
