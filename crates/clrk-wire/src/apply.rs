//! `POST /v1/apply`: the documents sent, what applying each did, and the streamed form.

use clrk_api::ObjectKey;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Body of `POST /v1/apply`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApplyRequest {
    /// Documents, validated all first and then applied in order.
    pub documents: Vec<ApplyDocument>,
    /// Validate everything and resolve the images, then answer what applying would do
    /// (`created`, `configured` with the revision it would make, `unchanged`) and change
    /// nothing.
    #[serde(default, rename = "dryRun", skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// One manifest document as the CLI sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApplyDocument {
    /// File the document came from, for the server's messages.
    pub source: String,
    /// 1-based position of the document in its file.
    pub index: usize,
    /// The resource as `clrk_api::Resource::to_stored` renders it.
    pub manifest: Value,
}

/// Answer of a plain (not streamed) apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApplyResponse {
    /// One result per document, in order.
    pub results: Vec<ApplyResult>,
}

/// What applying one document did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApplyResult {
    /// `TaskAgent`, `DaemonAgent`, `WorkerPool` or an egress kind.
    pub kind: String,
    #[serde(flatten)]
    pub key: ObjectKey,
    /// `created`, `configured` or `unchanged`.
    pub outcome: String,
    /// The revision the apply made (or, in a dry run, would make), if any.
    pub revision: Option<String>,
    /// Things that are allowed but probably not meant.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// One line of a streamed apply (`Accept: application/x-ndjson`): a pull's progress, then the
/// results or the error that stopped it.
///
/// ```
/// let line: clrk_wire::ApplyEvent =
///     serde_json::from_str(r#"{"error": "no such image", "status": 422}"#).unwrap();
/// assert!(matches!(line, clrk_wire::ApplyEvent::Failed { status: 422, .. }));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ApplyEvent {
    /// A layer of an image being pulled came further.
    Progress {
        /// How far.
        progress: PullProgress,
    },
    /// Every document was applied.
    Done {
        /// One result per document, in order.
        results: Vec<ApplyResult>,
    },
    /// The apply stopped; `status` is the code a plain apply would have answered.
    Failed {
        /// What went wrong.
        error: String,
        /// The HTTP status code of the failure.
        status: u16,
    },
}

/// How far one layer of an image being pulled at apply has come.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PullProgress {
    /// The image as the manifest names it.
    pub image: String,
    /// The layer's digest.
    pub layer: String,
    /// Bytes downloaded so far.
    pub done: u64,
    /// The layer's size in bytes.
    pub total: u64,
    /// Already in the server's layer cache: nothing was downloaded.
    pub cached: bool,
}
