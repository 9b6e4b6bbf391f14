//! Who connects: one NATS user per role, with the permissions `nats.conf` gives it.
//!
//! `nats.conf` reads each user's password from an environment variable
//! (`WEIR_NATS_<ROLE>_PASSWORD`); a weir process running as a role reads the same
//! variable. `weir up` generates the passwords once per data dir ([`Passwords`], a file
//! of mode 0600) and hands them to the nats-server it starts through that environment.
//! No password is fixed in the repository, and none is ever formatted into a log line:
//! [`Credentials`] prints as `user:***`.

use std::fmt;
use std::path::Path;

/// A role: a NATS user whose permissions allow exactly what that part of weir does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Creates and updates the stream (`weir up` at start); appends nothing.
    Admin,
    /// The HTTP gateway and the command line: uploads received/started/aborted, dataset
    /// edits, name claims of renames, tokens, notifications read; the JSON mirror and
    /// replies to `weir-requests.upload`.
    Gateway,
    Combiner,
    Inferrer,
    Registrar,
    /// Reads the log (projections, tail, status); appends nothing.
    Projector,
    /// The retention janitor: aborts stale multipart uploads, purges soft-deleted
    /// datasets, completes lost compensations, deletes unreferenced objects.
    Janitor,
    /// An outside producer: may only ask for uploads on `weir-requests.upload` and
    /// follow the JSON mirror.
    Client,
}

impl Role {
    pub const ALL: [Role; 8] = [
        Role::Admin,
        Role::Gateway,
        Role::Combiner,
        Role::Inferrer,
        Role::Registrar,
        Role::Projector,
        Role::Client,
        Role::Janitor,
    ];

    /// The NATS user name (as written in `nats.conf`).
    pub fn user(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Gateway => "gateway",
            Role::Combiner => "combiner",
            Role::Inferrer => "inferrer",
            Role::Registrar => "registrar",
            Role::Projector => "projector",
            Role::Client => "client",
            Role::Janitor => "janitor",
        }
    }

    /// The environment variable holding this role's password, for nats-server
    /// (`$WEIR_NATS_…_PASSWORD` in `nats.conf`) and for a weir process in this role.
    pub fn password_var(self) -> &'static str {
        match self {
            Role::Admin => "WEIR_NATS_ADMIN_PASSWORD",
            Role::Gateway => "WEIR_NATS_GATEWAY_PASSWORD",
            Role::Combiner => "WEIR_NATS_COMBINER_PASSWORD",
            Role::Inferrer => "WEIR_NATS_INFERRER_PASSWORD",
            Role::Registrar => "WEIR_NATS_REGISTRAR_PASSWORD",
            Role::Projector => "WEIR_NATS_PROJECTOR_PASSWORD",
            Role::Client => "WEIR_NATS_CLIENT_PASSWORD",
            Role::Janitor => "WEIR_NATS_JANITOR_PASSWORD",
        }
    }

    /// The role that runs the named service (`weir serve <name>`).
    pub fn of_service(name: &str) -> Option<Role> {
        match name {
            "gateway" => Some(Role::Gateway),
            "combiner" => Some(Role::Combiner),
            "inferrer" => Some(Role::Inferrer),
            "registrar" => Some(Role::Registrar),
            "projector" => Some(Role::Projector),
            "janitor" => Some(Role::Janitor),
            _ => None,
        }
    }
}

/// A user and password. `Debug` and `Display` never show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    user: String,
    password: String,
}

impl Credentials {
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            user: user.into(),
            password: password.into(),
        }
    }

    /// The role's credentials from its environment variable, if set.
    pub fn from_env(role: Role) -> Option<Self> {
        let password = std::env::var(role.password_var()).ok()?;
        (!password.is_empty()).then(|| Self::new(role.user(), password))
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn password(&self) -> &str {
        &self.password
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:***", self.user)
    }
}

impl fmt::Display for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:***", self.user)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordsError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: line {line}: expected WEIR_NATS_<ROLE>_PASSWORD=<password>")]
    Malformed { path: String, line: usize },
    #[error("{path} has no password for role {user}; remove the file to generate a new set")]
    Missing { path: String, user: &'static str },
    #[error("no randomness for NATS passwords: {0}")]
    Random(String),
}

/// One random password per role, kept in a file (`VAR=password` lines, mode 0600).
#[derive(Clone)]
pub struct Passwords {
    by_role: Vec<(Role, String)>,
}

impl fmt::Debug for Passwords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passwords(***)")
    }
}

impl Passwords {
    /// Fresh random passwords (32 random bytes each, hex).
    pub fn generate() -> Result<Self, PasswordsError> {
        let mut by_role = Vec::new();
        for role in Role::ALL {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).map_err(|e| PasswordsError::Random(e.to_string()))?;
            by_role.push((role, hex::encode(bytes)));
        }
        Ok(Self { by_role })
    }

    /// The passwords in `path`, generating and writing them (mode 0600) when the file
    /// does not exist yet. A file written before a role existed (the janitor's) gets
    /// that role's password added; the others are kept.
    pub fn load_or_create(path: &Path) -> Result<Self, PasswordsError> {
        let shown = || path.display().to_string();
        let passwords = match std::fs::read_to_string(path) {
            Ok(text) => {
                let mut known = Self::parse_lines(&text, &shown())?;
                let fresh = Self::generate()?;
                let before = known.by_role.len();
                for (role, password) in fresh.by_role {
                    if !known.by_role.iter().any(|(r, _)| *r == role) {
                        known.by_role.push((role, password));
                    }
                }
                if known.by_role.len() == before {
                    return Ok(known);
                }
                known
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::generate()?,
            Err(source) => {
                return Err(PasswordsError::Io {
                    path: shown(),
                    source,
                });
            }
        };
        let io = |source| PasswordsError::Io {
            path: shown(),
            source,
        };
        let tmp = path.with_extension("tmp");
        {
            use std::io::Write;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&tmp).map_err(io)?;
            file.write_all(passwords.to_file().as_bytes()).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(io)?;
        Ok(passwords)
    }

    /// The passwords in `path`, if the file exists.
    pub fn load(path: &Path) -> Result<Option<Self>, PasswordsError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, &path.display().to_string()).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(PasswordsError::Io {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    fn parse(text: &str, path: &str) -> Result<Self, PasswordsError> {
        let passwords = Self::parse_lines(text, path)?;
        for role in Role::ALL {
            if !passwords.by_role.iter().any(|(r, _)| *r == role) {
                return Err(PasswordsError::Missing {
                    path: path.to_owned(),
                    user: role.user(),
                });
            }
        }
        Ok(passwords)
    }

    /// The roles' passwords the file names, whichever they are.
    fn parse_lines(text: &str, path: &str) -> Result<Self, PasswordsError> {
        let mut by_role = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let malformed = || PasswordsError::Malformed {
                path: path.to_owned(),
                line: i + 1,
            };
            let (var, password) = line.split_once('=').ok_or_else(malformed)?;
            let role = Role::ALL
                .into_iter()
                .find(|r| r.password_var() == var.trim())
                .ok_or_else(malformed)?;
            by_role.push((role, password.trim().to_owned()));
        }
        Ok(Self { by_role })
    }

    fn to_file(&self) -> String {
        let mut out = String::from(
            "# NATS passwords of this weir data dir, one per role (nats.conf reads them from\n# these environment variables). Generated at first start; keep private.\n",
        );
        for (role, password) in &self.by_role {
            out.push_str(&format!("{}={password}\n", role.password_var()));
        }
        out
    }

    pub fn credentials(&self, role: Role) -> Credentials {
        let password = self
            .by_role
            .iter()
            .find(|(r, _)| *r == role)
            .map(|(_, p)| p.clone())
            .unwrap_or_default();
        Credentials::new(role.user(), password)
    }

    /// The environment nats-server needs to read `nats.conf`'s users.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        self.by_role
            .iter()
            .map(|(role, password)| (role.password_var(), password.clone()))
            .collect()
    }

    /// Every password, e.g. to check that none of them leaked into a log.
    pub fn secrets(&self) -> impl Iterator<Item = &str> {
        self.by_role.iter().map(|(_, p)| p.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_round_trip_through_their_file_and_never_print() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nats.passwords");
        let made = Passwords::load_or_create(&path).unwrap();
        let again = Passwords::load_or_create(&path).unwrap();
        for role in Role::ALL {
            assert_eq!(made.credentials(role), again.credentials(role));
            assert_eq!(made.credentials(role).password().len(), 64);
            let shown = format!("{:?} {}", made.credentials(role), made.credentials(role));
            assert!(
                !shown.contains(made.credentials(role).password()),
                "{shown}"
            );
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "WEIR_NATS_ADMIN_PASSWORD=x\n").unwrap();
        let err = Passwords::load(&path).unwrap_err().to_string();
        assert!(err.contains("no password for role gateway"), "{err}");
        // A data dir from before a role existed: load_or_create adds it, keeps the rest.
        let old: String = Role::ALL
            .iter()
            .filter(|r| **r != Role::Janitor)
            .map(|r| format!("{}={}\n", r.password_var(), made.credentials(*r).password()))
            .collect();
        std::fs::write(&path, old).unwrap();
        let grown = Passwords::load_or_create(&path).unwrap();
        assert_eq!(
            grown.credentials(Role::Admin),
            made.credentials(Role::Admin)
        );
        assert_eq!(grown.credentials(Role::Janitor).password().len(), 64);
        assert_eq!(
            Passwords::load(&path)
                .unwrap()
                .unwrap()
                .credentials(Role::Janitor),
            grown.credentials(Role::Janitor)
        );
        std::fs::write(&path, "garbage\n").unwrap();
        let err = Passwords::load(&path).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }
}
