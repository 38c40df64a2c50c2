//! The egress configuration that governs one sandbox: its gateways and what is attached to
//! them, read from the store when a connection or question arrives, so a change applies to
//! the next one without a new agent revision.

use clrk_api::{
    AIProviderRoute, CredentialInjectionPolicy, EgressGateway, EgressL4Route, Resource,
};
use clrk_store::Store;

use crate::EgressError;
use crate::peers::SandboxIdentity;

/// The gateways an agent names and their routes and policies, all in one namespace.
#[derive(Debug, Clone, Default)]
pub struct EgressConfig {
    /// The referenced gateways that exist, in the agent's order.
    pub gateways: Vec<EgressGateway>,
    /// Names the agent references that do not exist.
    pub missing: Vec<String>,
    pub routes: Vec<EgressL4Route>,
    pub credentials: Vec<CredentialInjectionPolicy>,
    pub ai_routes: Vec<AIProviderRoute>,
}

impl EgressConfig {
    /// The configuration governing `identity` now; one that cannot be read denies everything
    /// (the default is empty).
    pub(crate) async fn for_sandbox(store: &Store, identity: &SandboxIdentity) -> EgressConfig {
        let loaded = EgressConfig::load(store, &identity.namespace, &identity.gateways).await;
        loaded.unwrap_or_else(|error| {
            tracing::error!(%error, "egress configuration unreadable: denying");
            EgressConfig::default()
        })
    }

    /// Reads the configuration of gateways `names` in `namespace`. Objects that no longer
    /// parse (a manifest stored by a newer clrk, say) are skipped with a warning.
    pub async fn load(
        store: &Store,
        namespace: &str,
        names: &[String],
    ) -> Result<Self, EgressError> {
        let objects = store
            .egress_objects(Some(namespace))
            .await
            .map_err(|e| EgressError::Store(e.to_string()))?;
        let mut config = EgressConfig::default();
        let attached =
            |parents: &[clrk_api::ParentRef]| parents.iter().any(|p| names.contains(&p.name));
        let mut gateways = Vec::new();
        for object in objects {
            let resource = match Resource::from_stored(&object.spec) {
                Ok(r) => r,
                Err(error) => {
                    tracing::warn!(namespace, kind = %object.kind, name = %object.name, %error, "stored egress object skipped");
                    continue;
                }
            };
            match resource {
                Resource::EgressGateway(g) if names.contains(&g.metadata.name) => gateways.push(g),
                Resource::EgressL4Route(r) if attached(&r.spec.parent_refs) => {
                    config.routes.push(r);
                }
                Resource::CredentialInjectionPolicy(p) if attached(&p.spec.parent_refs) => {
                    config.credentials.push(p);
                }
                Resource::AIProviderRoute(r) if attached(&r.spec.parent_refs) => {
                    config.ai_routes.push(r);
                }
                _ => {}
            }
        }
        for name in names {
            match gateways.iter().position(|g| &g.metadata.name == name) {
                Some(i) => config.gateways.push(gateways.swap_remove(i)),
                None => config.missing.push(name.clone()),
            }
        }
        Ok(config)
    }

    /// The gateway whose TLS handling, upstream trust, timeout and telemetry apply.
    pub fn primary(&self) -> Option<&EgressGateway> {
        self.gateways.first()
    }
}
