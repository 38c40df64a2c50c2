//! The kinds of object a manifest can describe.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// The `kind` of a manifest document.
///
/// ```
/// use clrk_api::Kind;
/// assert_eq!(Kind::TaskAgent.to_string(), "TaskAgent");
/// assert_eq!(Kind::TaskAgent.lower(), "taskagent");
/// assert_eq!("daemonagent".parse::<Kind>().unwrap(), Kind::DaemonAgent);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// One run per trigger.
    TaskAgent,
    /// One supervised long-lived process.
    DaemonAgent,
    /// A pool of workers that run sandboxes.
    WorkerPool,
    /// Where agents' outbound traffic goes through.
    EgressGateway,
    /// Destinations a gateway lets through.
    EgressL4Route,
    /// A header a gateway sets from a secret.
    CredentialInjectionPolicy,
    /// LLM provider traffic a gateway meters and budgets.
    AIProviderRoute,
}

impl Kind {
    /// Every kind, in the order they are documented.
    pub const ALL: [Kind; 7] = [
        Kind::TaskAgent,
        Kind::DaemonAgent,
        Kind::WorkerPool,
        Kind::EgressGateway,
        Kind::EgressL4Route,
        Kind::CredentialInjectionPolicy,
        Kind::AIProviderRoute,
    ];

    /// The name as written in `kind:`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::TaskAgent => "TaskAgent",
            Kind::DaemonAgent => "DaemonAgent",
            Kind::WorkerPool => "WorkerPool",
            Kind::EgressGateway => "EgressGateway",
            Kind::EgressL4Route => "EgressL4Route",
            Kind::CredentialInjectionPolicy => "CredentialInjectionPolicy",
            Kind::AIProviderRoute => "AIProviderRoute",
        }
    }

    /// The lowercase name used in CLI output (`taskagent/word-count created`) and URLs.
    pub fn lower(&self) -> &'static str {
        match self {
            Kind::TaskAgent => "taskagent",
            Kind::DaemonAgent => "daemonagent",
            Kind::WorkerPool => "workerpool",
            Kind::EgressGateway => "egressgateway",
            Kind::EgressL4Route => "egressl4route",
            Kind::CredentialInjectionPolicy => "credentialinjectionpolicy",
            Kind::AIProviderRoute => "aiproviderroute",
        }
    }

    /// Whether objects of this kind configure the egress gateway.
    pub fn is_egress(&self) -> bool {
        matches!(
            self,
            Kind::EgressGateway
                | Kind::EgressL4Route
                | Kind::CredentialInjectionPolicy
                | Kind::AIProviderRoute
        )
    }

    /// The kinds, as a message lists them.
    pub fn expected() -> String {
        let names: Vec<&str> = Kind::ALL.iter().map(Kind::as_str).collect();
        let (last, rest) = names.split_last().expect("there are kinds");
        format!("{} or {last}", rest.join(", "))
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A kind name clrk does not know.
///
/// Defined here rather than in `error` so that `kind` needs nothing above it;
/// [`crate::ManifestError::UnknownKind`] carries it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown kind \"{input}\" (expected {})", Kind::expected())]
pub struct UnknownKind {
    /// The text that was given.
    pub input: String,
}

impl FromStr for Kind {
    type Err = UnknownKind;

    /// Accepts the manifest spelling (`TaskAgent`) and the lowercase one (`taskagent`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|k| k.as_str() == s || k.lower() == s)
            .ok_or_else(|| UnknownKind {
                input: s.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in Kind::ALL {
            assert_eq!(kind.to_string().parse::<Kind>().unwrap(), kind);
            assert_eq!(kind.lower().parse::<Kind>().unwrap(), kind);
        }
    }

    #[test]
    fn unknown_kind_lists_the_allowed_ones() {
        let err = "Foo".parse::<Kind>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown kind \"Foo\" (expected TaskAgent, DaemonAgent, WorkerPool, EgressGateway, \
             EgressL4Route, CredentialInjectionPolicy or AIProviderRoute)"
        );
    }
}
