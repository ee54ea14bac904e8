//! Errors raised while building authenticators from their settings.

use std::io;
use std::path::PathBuf;

/// A setting that cannot make a working authenticator. The message names
/// the file, line or key at fault, and never holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        source: io::Error,
    },
    /// A value is unusable.
    #[error("{what}: {reason}")]
    Invalid {
        /// What is at fault (a file and line, a key, a setting).
        what: String,
        /// Why.
        reason: String,
    },
}

impl SetupError {
    pub(super) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        SetupError::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }

    pub(super) fn read(path: &std::path::Path) -> impl FnOnce(io::Error) -> Self + '_ {
        move |source| SetupError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
