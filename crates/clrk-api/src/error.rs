//! The one error type of this crate.

use thiserror::Error;

use crate::kind::UnknownKind;

/// Why a manifest, or one of its values, was rejected.
///
/// Every message names the file, the document and the field at fault, and says what is
/// allowed, so `clrk apply` can print it as it is.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ManifestError {
    /// The file is not well-formed YAML.
    #[error("{file}: invalid YAML at line {line} column {column}: {message}")]
    Yaml {
        /// File name as given by the caller.
        file: String,
        /// 1-based line of the fault.
        line: u64,
        /// 1-based column of the fault.
        column: u64,
        /// What the parser found wrong.
        message: String,
    },
    /// The file looks like JSON (starts with `{` or `[`) but is not well-formed JSON.
    #[error("{file}: invalid JSON at line {line} column {column}: {message}")]
    Json {
        /// File name as given by the caller.
        file: String,
        /// 1-based line of the fault.
        line: u64,
        /// 1-based column of the fault.
        column: u64,
        /// What the parser found wrong.
        message: String,
    },
    /// The file holds no document at all.
    #[error("{file}: no manifests found: add a document with apiVersion, kind, metadata and spec")]
    Empty {
        /// File name as given by the caller.
        file: String,
    },
    /// A document is not a mapping.
    #[error(
        "{file}: document {document}: must be a mapping with apiVersion, kind, metadata and spec"
    )]
    NotAMapping {
        /// File name as given by the caller.
        file: String,
        /// 1-based position of the document in the file.
        document: usize,
    },
    /// One field of a document is missing, unknown or has a value that is not allowed.
    #[error("{file}: document {document}: {path}: {message}")]
    Field {
        /// File name as given by the caller.
        file: String,
        /// 1-based position of the document in the file.
        document: usize,
        /// Dotted path of the field, like `spec.template.spec.env[0].name`.
        path: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// A string is not a Go-style duration.
    #[error("\"{input}\" is not a valid duration: {reason}")]
    InvalidDuration {
        /// The text that was given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A string is not a valid cpu or memory quantity.
    #[error("\"{input}\" is not a valid {what} quantity: {reason}")]
    InvalidQuantity {
        /// The text that was given.
        input: String,
        /// `cpu` or `memory`.
        what: &'static str,
        /// What is wrong with it and what would be accepted.
        reason: String,
    },
    /// `spec.schedule` or `spec.timeZone` of a TaskAgent cannot be read.
    #[error("{field}: \"{input}\" is not valid: {reason}")]
    InvalidSchedule {
        /// `spec.schedule` or `spec.timeZone`.
        field: &'static str,
        /// The text that was given.
        input: String,
        /// What is wrong with it and what is allowed.
        reason: String,
    },
    /// A kind name that clrk does not know.
    #[error(transparent)]
    UnknownKind(#[from] UnknownKind),
    /// Several documents of one file have faults: each one's error on a line of its own.
    #[error("{}", lines(.0))]
    Several(Vec<ManifestError>),
}

fn lines(errors: &[ManifestError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}
