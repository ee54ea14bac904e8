//! `[admin]`: the admin API's listening address and its bearer token
//! (written in the config or read from a file), each checked and named by
//! its path.

use std::net::SocketAddr;
use std::sync::Arc;

use super::super::config::Admin;
use super::super::raw::RawAdmin;
use super::Validator;

/// The keys of `[admin]`, for the unknown-key error.
const KEYS: &[&str] = &["bind", "token", "token_file"];

/// Where the admin API listens when `bind` is not given.
const DEFAULT_BIND: &str = "127.0.0.1:9901";

/// The shortest token accepted.
const MIN_TOKEN: usize = 16;

impl Validator {
    /// Validates the `[admin]` table; `None` when it is absent or invalid.
    pub(super) fn admin(&mut self, table: Option<toml::Table>) -> Option<Admin> {
        let table = table?;
        let mut unknown = false;
        for key in table.keys() {
            if !KEYS.contains(&key.as_str()) {
                unknown = true;
                self.err(
                    format!("admin.{key}"),
                    format!("unknown key (expected one of {})", KEYS.join(", ")),
                );
            }
        }
        if unknown {
            return None;
        }
        let raw: RawAdmin = match toml::Value::Table(table).try_into() {
            Ok(raw) => raw,
            Err(e) => {
                self.err("admin", e.to_string().trim_end().to_string());
                return None;
            }
        };
        let bind_text = raw.bind.unwrap_or_else(|| DEFAULT_BIND.to_string());
        let bind = match bind_text.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(
                    "admin.bind",
                    format!("{bind_text:?} is not an address such as \"{DEFAULT_BIND}\""),
                );
                None
            }
        };
        let token = match (raw.token, raw.token_file) {
            (Some(_), Some(_)) => {
                self.err("admin.token", "set either token or token_file, not both");
                None
            }
            (None, None) => {
                self.err(
                    "admin.token",
                    "is required: set token, or token_file to read it from a file",
                );
                None
            }
            (Some(t), None) => self.token("admin.token", &t, "is empty"),
            (None, Some(file)) => match std::fs::read_to_string(&file) {
                Ok(text) => {
                    let t = text.trim_end_matches(['\n', '\r']);
                    self.token("admin.token_file", t, &format!("{file:?} is empty"))
                }
                Err(e) => {
                    self.err("admin.token_file", format!("cannot read {file:?}: {e}"));
                    None
                }
            },
        };
        Some(Admin {
            bind: bind?,
            token: token?,
        })
    }

    /// Checks a token; `path` names where it came from.
    fn token(&mut self, path: &str, token: &str, empty: &str) -> Option<Arc<str>> {
        if token.is_empty() {
            self.err(path, empty);
            return None;
        }
        // Sent as `Authorization: Bearer <token>`: a header value that must
        // survive trimming and carry no separators.
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            self.err(
                path,
                "the token must be visible ASCII characters only (no spaces or control characters)",
            );
            return None;
        }
        if token.len() < MIN_TOKEN {
            self.err(
                path,
                format!("the token is too short: at least {MIN_TOKEN} characters are required"),
            );
            return None;
        }
        Some(token.into())
    }
}
