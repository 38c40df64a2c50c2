//! HTTP header names of the ingress, shared by the server that reads and sets them and the
//! CLI that sends and reads them. Lowercase, as HTTP/2 writes them.

/// Request header naming the TaskAgent to run: `namespace/name`, or `name` in `default`.
pub const TASK_AGENT: &str = "x-clrk-taskagent";
/// Request header saying what started the execution (`cli`, `http`, ...).
pub const TRIGGER: &str = "x-clrk-trigger";
/// Response header naming the execution that answered.
pub const EXECUTION_ID: &str = "x-clrk-execution-id";
/// Response trailer (or header) with the agent's exit code, or `timeout`.
pub const EXIT_CODE: &str = "x-clrk-exit-code";
/// Request header lowering the execution's timeout for this request (a Go duration).
pub const TIMEOUT: &str = "x-clrk-timeout";
