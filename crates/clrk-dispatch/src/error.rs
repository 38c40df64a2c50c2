use http::StatusCode;

use crate::body::BodyError;

/// Why an invocation could not run; each variant maps to the status SPECIFICATION §4 documents.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("{0}")]
    BadHeader(String),
    #[error("{0}")]
    InvalidJsonBody(String),
    #[error(transparent)]
    Body(#[from] crate::body::BodyError),
    #[error(
        "taskagent {namespace}/{name} not found: apply a manifest for it first (clrk apply -f FILE)"
    )]
    AgentNotFound { namespace: String, name: String },
    #[error(
        "{namespace}/{name} is a DaemonAgent, not a TaskAgent: a daemon runs on its own and answers no requests (its output: clrk agents logs {name} -n {namespace})"
    )]
    NotATask { namespace: String, name: String },
    #[error("taskagent {namespace}/{name} has no ready revision: {reason}")]
    NotReady {
        namespace: String,
        name: String,
        reason: String,
    },
    #[error(
        "taskagent {namespace}/{name} is at its limit of {limit} concurrent executions; retry shortly"
    )]
    TooManyExecutions {
        namespace: String,
        name: String,
        limit: u32,
    },
    #[error(
        "worker pool {pool} is at its limit of {limit} executions at once and {why}; retry shortly"
    )]
    WorkerBusy {
        pool: String,
        limit: u32,
        why: String,
    },
    #[error("execution id {0} was already used: send a new X-Clrk-Execution-ID")]
    DuplicateExecution(String),
    #[error("clrk is shutting down; retry against the restarted server")]
    ShuttingDown,
    /// A worker refused the order; its status and message are passed on as they are.
    #[error("{message}")]
    Remote { status: StatusCode, message: String },
    /// No worker could be reached: the order was not delivered, nothing was recorded.
    #[error("worker {worker} cannot be reached ({reason}); retry shortly")]
    WorkerUnreachable { worker: String, reason: String },
    /// No Ready worker serves the agent's pool.
    #[error("no worker of pool {pool} is ready: start one with clrk worker --pool {pool}")]
    NoWorker { pool: String },
    #[error("store: {0}")]
    Store(#[from] clrk_store::StoreError),
    #[error("{0}")]
    Internal(String),
}

impl DispatchError {
    /// The HTTP status the ingress answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            DispatchError::BadHeader(_) | DispatchError::InvalidJsonBody(_) => {
                StatusCode::BAD_REQUEST
            }
            DispatchError::Body(e) => match e {
                BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                BodyError::Malformed(_) => StatusCode::BAD_REQUEST,
                BodyError::TimedOut(_) => StatusCode::REQUEST_TIMEOUT,
                BodyError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            },
            DispatchError::AgentNotFound { .. } | DispatchError::NotATask { .. } => {
                StatusCode::NOT_FOUND
            }
            DispatchError::Remote { status, .. } => *status,
            DispatchError::NotReady { .. }
            | DispatchError::ShuttingDown
            | DispatchError::WorkerUnreachable { .. }
            | DispatchError::NoWorker { .. } => StatusCode::SERVICE_UNAVAILABLE,
            DispatchError::TooManyExecutions { .. } | DispatchError::WorkerBusy { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            DispatchError::DuplicateExecution(_) => StatusCode::CONFLICT,
            DispatchError::Store(_) | DispatchError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}
