//! Shapes every route shares: lists, deletions and errors.

use clrk_api::ObjectKey;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A list answer: `{"items": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct List<T> {
    /// The objects, in the order the route documents.
    pub items: Vec<T>,
}

/// Answer of the delete routes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Deleted {
    /// What was deleted.
    pub deleted: ObjectRef,
}

/// Kind, namespace and name of a stored object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ObjectRef {
    /// `TaskAgent`, `DaemonAgent`, `WorkerPool`, `Secret` or an egress kind.
    pub kind: String,
    #[serde(flatten)]
    pub key: ObjectKey,
}

/// Every refusal and failure: the status code says which, `error` says what to do.
///
/// ```
/// let body = clrk_wire::ErrorBody { error: "agent default/x not found".into() };
/// assert_eq!(serde_json::to_string(&body).unwrap(), r#"{"error":"agent default/x not found"}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// A message for people, naming the thing at fault.
    pub error: String,
}
