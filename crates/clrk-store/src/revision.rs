//! Revisions: immutable snapshots of what shapes an agent's sandbox (SPECIFICATION §3 Revisions).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde_json::Value;

/// Whether a revision can take executions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevisionState {
    /// Not usable yet (e.g. its image is still being pulled).
    Pending,
    /// Usable; new revisions start here.
    Ready,
    /// Never usable; `reason` says why.
    Failed,
}

impl RevisionState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RevisionState::Pending => "Pending",
            RevisionState::Ready => "Ready",
            RevisionState::Failed => "Failed",
        }
    }
}

impl fmt::Display for RevisionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RevisionState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "Pending" => Ok(RevisionState::Pending),
            "Ready" => Ok(RevisionState::Ready),
            "Failed" => Ok(RevisionState::Failed),
            other => Err(format!(
                "unknown revision state {other:?}; expected Pending, Ready or Failed"
            )),
        }
    }
}

/// One immutable revision of an agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Revision {
    /// `<agent>-00001`: the agent name and a 5-digit, zero-padded number.
    pub name: String,
    /// Namespace of the agent.
    pub namespace: String,
    /// Agent name.
    pub agent: String,
    /// 1 for the first revision of the agent, then +1 each.
    pub number: u32,
    /// Everything that shapes the sandbox, as given to `apply_agent`.
    pub shape: Value,
    /// Image reference as written in the manifest.
    pub image_ref: String,
    /// Digest the reference resolved to.
    pub image_digest: String,
    /// Whether it can take executions.
    pub state: RevisionState,
    /// Why it is `Failed` (or any note set with the state).
    pub reason: Option<String>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
}

/// The revision name for `agent`'s revision `number`.
///
/// ```
/// assert_eq!(clrk_store::revision_name("word-count", 2), "word-count-00002");
/// ```
pub fn revision_name(agent: &str, number: u32) -> String {
    format!("{agent}-{number:05}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_names_are_five_digit_zero_padded() {
        assert_eq!(revision_name("echo", 1), "echo-00001");
        assert_eq!(revision_name("echo", 12345), "echo-12345");
    }

    #[test]
    fn state_text_round_trips() {
        for s in [
            RevisionState::Pending,
            RevisionState::Ready,
            RevisionState::Failed,
        ] {
            assert_eq!(s.to_string().parse::<RevisionState>(), Ok(s));
        }
        assert!("ready".parse::<RevisionState>().is_err());
    }
}
