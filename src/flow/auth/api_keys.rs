//! API keys: a set of keys held as SHA-256 digests and looked up in constant
//! time with respect to the keys' contents.
//!
//! # Key file format
//!
//! UTF-8 text, one key a line:
//!
//! ```text
//! # Comments take a whole line; blank lines are ignored.
//! k_live_8Jq2vR7wXn4pLz9sTb6m   billing-service
//! k_live_Qm3nW8cV1xZ5rT7yHs2d   billing-service
//!
//! # Unnamed: the identity is key-XXXXXXXX (see below).
//! k_live_Zt4bN6yPq1wE9uJc5kLa
//! ```
//!
//! - A line is `KEY` or `KEY NAME`, separated by spaces or tabs; leading and
//!   trailing whitespace is ignored. A line whose first non-blank character
//!   is `#` is a comment, so a key cannot start with `#`. There are no
//!   trailing comments: a third field is an error (so is a name starting
//!   with `#`), which catches `KEY # note` by mistake.
//! - `KEY`: 16 to 512 visible ASCII characters (`!` to `~`, no spaces).
//! - `NAME`: the identity the key authenticates as, 1 to 128 visible ASCII
//!   characters. Several keys may share a name (rotation: old and new key
//!   for one client). Without a name the identity is `key-` and the first 8
//!   hex digits of the key's SHA-256: stable, and not enough to recover or
//!   guess the key.
//! - A key listed twice (in one file or across sources) is an error.
//!
//! Errors name the file and line, never the key.
//!
//! # What the lookup hides
//!
//! The presented key is hashed (SHA-256) and its digest compared with every
//! stored digest with `subtle`'s constant-time equality, all of them every
//! time, the match (if any) picked with a constant-time select: no early exit
//! on the first differing byte or on the first matching key. So the time
//! does not reveal how much of any stored key a guess shares, nor (beyond
//! cache effects of reading the one matching entry's identity) which entry
//! matched. Not hidden: the number of keys (the loop's length), the
//! presented key's length (hashing time), and whether it was accepted. Only
//! digests are kept in memory, not the keys.

use std::path::Path;

use ring::digest::{digest, SHA256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use super::error::SetupError;
use super::identity::{Identity, Method};

/// The header an API key is usually sent in.
pub const DEFAULT_HEADER: &str = "x-api-key";
/// The shortest key accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 16;
/// The longest key accepted, in bytes (also bounds the hashing per request).
pub const MAX_KEY_BYTES: usize = 512;
/// The longest key name accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 128;

type Digest = [u8; 32];

struct Entry {
    digest: Digest,
    identity: Identity,
}

/// A set of API keys, each with an identity. Build with
/// [`ApiKeys::builder`], [`ApiKeys::from_keys`] or [`ApiKeys::from_file`];
/// look up with [`ApiKeys::lookup`].
pub struct ApiKeys {
    entries: Box<[Entry]>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeys")
            .field("keys", &self.entries.len())
            .finish()
    }
}

/// Collects keys from lists and files, checking each; [`build`](Self::build)
/// makes the [`ApiKeys`].
#[derive(Default)]
pub struct ApiKeysBuilder {
    entries: Vec<Entry>,
    /// Where each entry came from, for duplicate messages.
    origins: Vec<String>,
}

impl ApiKeys {
    /// An empty builder.
    pub fn builder() -> ApiKeysBuilder {
        ApiKeysBuilder::default()
    }

    /// Keys without names (identities `key-XXXXXXXX`).
    pub fn from_keys<I, K>(keys: I) -> Result<Self, SetupError>
    where
        I: IntoIterator<Item = K>,
        K: AsRef<str>,
    {
        let mut b = Self::builder();
        for key in keys {
            b.key(key.as_ref(), None)?;
        }
        b.build()
    }

    /// Keys from a key file (format in the module docs).
    pub fn from_file(path: &Path) -> Result<Self, SetupError> {
        let mut b = Self::builder();
        b.file(path)?;
        b.build()
    }

    /// How many keys the set holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the set is empty (never, once built).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The identity of the presented key, or `None` when it is not in the
    /// set. Constant-time with respect to the stored keys (module docs).
    pub fn lookup(&self, presented: &[u8]) -> Option<Identity> {
        if presented.len() > MAX_KEY_BYTES {
            // No stored key is this long; the bound is public.
            return None;
        }
        let wanted = sha256(presented);
        let mut found = subtle::Choice::from(0);
        let mut index = 0u32;
        for (i, entry) in self.entries.iter().enumerate() {
            let same = entry.digest.ct_eq(&wanted);
            // `build` caps the set far below u32::MAX entries.
            index.conditional_assign(&(i as u32), same);
            found |= same;
        }
        if bool::from(found) {
            self.entries.get(index as usize).map(|e| e.identity.clone())
        } else {
            None
        }
    }
}

impl ApiKeysBuilder {
    /// Adds one key, with `name` as its identity when given.
    pub fn key(&mut self, key: &str, name: Option<&str>) -> Result<&mut Self, SetupError> {
        let origin = format!("API key #{}", self.entries.len() + 1);
        self.push(key, name, origin)?;
        Ok(self)
    }

    /// Adds the keys of a key file's text; `origin` (e.g. the path) names
    /// it in errors.
    pub fn text(&mut self, text: &str, origin: &str) -> Result<&mut Self, SetupError> {
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = format!("{origin}, line {}", n + 1);
            let mut fields = line.split_ascii_whitespace();
            let key = fields.next().unwrap_or_default();
            let name = fields.next();
            if fields.next().is_some() {
                return Err(SetupError::invalid(
                    at,
                    "expected `KEY` or `KEY NAME` (names have no spaces; \
                     comments take a whole line)",
                ));
            }
            self.push(key, name, at)?;
        }
        Ok(self)
    }

    /// Adds the keys of a key file.
    pub fn file(&mut self, path: &Path) -> Result<&mut Self, SetupError> {
        let text = std::fs::read_to_string(path).map_err(SetupError::read(path))?;
        self.text(&text, &path.display().to_string())
    }

    /// The set; an error when no key was added.
    pub fn build(self) -> Result<ApiKeys, SetupError> {
        if self.entries.is_empty() {
            return Err(SetupError::invalid("API keys", "no key given"));
        }
        if self.entries.len() > 1_000_000 {
            return Err(SetupError::invalid("API keys", "more than 1000000 keys"));
        }
        Ok(ApiKeys {
            entries: self.entries.into_boxed_slice(),
        })
    }

    fn push(&mut self, key: &str, name: Option<&str>, at: String) -> Result<(), SetupError> {
        check_key(key).map_err(|reason| SetupError::invalid(at.clone(), reason))?;
        let digest = sha256(key.as_bytes());
        let identity = match name {
            Some(name) => {
                check_name(name).map_err(|reason| SetupError::invalid(at.clone(), reason))?;
                name.to_owned()
            }
            None => default_name(&digest),
        };
        // Setup time: an ordinary comparison is fine here.
        if let Some(i) = self.entries.iter().position(|e| e.digest == digest) {
            let first = &self.origins[i];
            return Err(SetupError::invalid(
                at,
                format!("duplicate key (first at {first})"),
            ));
        }
        let identity = Identity::new(&identity, Method::ApiKey)
            .ok_or_else(|| SetupError::invalid(at.clone(), "unusable name"))?;
        self.entries.push(Entry { digest, identity });
        self.origins.push(at);
        Ok(())
    }
}

fn sha256(bytes: &[u8]) -> Digest {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

/// `key-` and the first 8 hex digits of the key's digest.
fn default_name(digest: &Digest) -> String {
    let mut name = String::from("key-");
    for b in &digest[..4] {
        name.push_str(&format!("{b:02x}"));
    }
    name
}

fn visible_ascii(s: &str) -> bool {
    s.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

fn check_key(key: &str) -> Result<(), &'static str> {
    if key.len() < MIN_KEY_BYTES {
        return Err("key shorter than 16 characters");
    }
    if key.len() > MAX_KEY_BYTES {
        return Err("key longer than 512 characters");
    }
    if !visible_ascii(key) {
        return Err("key has characters other than visible ASCII");
    }
    if key.starts_with('#') {
        return Err("key starts with `#`");
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err("name must be 1 to 128 characters");
    }
    if !visible_ascii(name) {
        return Err("name has characters other than visible ASCII");
    }
    if name.starts_with('#') {
        return Err("name starts with `#` (comments take a whole line)");
    }
    Ok(())
}
