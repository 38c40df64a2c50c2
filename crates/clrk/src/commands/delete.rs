//! `clrk delete -f FILE`: delete the resources a manifest names.

use clrk_api::Kind;
use clrk_wire::Deleted;

use crate::cli::{DeleteArgs, IgnoreNotFound};
use crate::client::ApiClient;
use crate::commands::Session;
use crate::error::is_not_found;
use crate::manifests;
use crate::output;

/// Deletes each document's resource in order; the first failure (e.g. not found, unless
/// `--ignore-not-found`) stops.
pub async fn run(args: DeleteArgs, session: &Session) -> anyhow::Result<()> {
    let documents = manifests::load(&args.input.files, args.input.recursive)?;
    let api = session.api()?;
    for document in &documents {
        let resource = &document.document.resource;
        let meta = resource.metadata();
        let kind = resource.kind();
        let path: Vec<&str> = match kind {
            Kind::TaskAgent | Kind::DaemonAgent => {
                vec!["v1", "agents", &meta.namespace, &meta.name]
            }
            Kind::WorkerPool => vec!["v1", "pools", &meta.name],
            Kind::EgressGateway
            | Kind::EgressL4Route
            | Kind::CredentialInjectionPolicy
            | Kind::AIProviderRoute => {
                vec!["v1", "egress", &meta.namespace, kind.as_str(), &meta.name]
            }
        };
        delete(&api, &path, &args.missing).await?;
    }
    Ok(())
}

/// Sends one delete and prints `kind/name deleted`; with `--ignore-not-found`, an object
/// that does not exist prints nothing.
pub async fn delete(
    api: &ApiClient,
    path: &[&str],
    missing: &IgnoreNotFound,
) -> anyhow::Result<()> {
    let response: Deleted = match api.delete(path).await {
        Ok(response) => response,
        Err(error) if missing.ignore_not_found && is_not_found(&error) => return Ok(()),
        Err(error) => return Err(error),
    };
    let deleted = response.deleted;
    output::print(&format!(
        "{}/{} deleted\n",
        deleted.kind.to_lowercase(),
        deleted.key.name
    ))?;
    Ok(())
}
