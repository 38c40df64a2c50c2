//! Rules serde cannot express: names, non-empty strings, positive durations, the largest
//! log limit, and the warning for `valueFrom.secretKeyRef`.

use crate::checks::{name, positive};
use crate::container::{ContainerSpec, EgressRef};
use crate::daemon_agent::DaemonAgentSpec;
use crate::egress_validate;
use crate::error::ManifestError;
use crate::field_error::FieldError;
use crate::meta::ObjectMeta;
use crate::quantity::{LogLimit, MAX_LOG_LIMIT_BYTES};
use crate::resource::Resource;
use crate::schedule::Schedule;
use crate::task_agent::{MAX_REUSE_EXECUTIONS, SandboxReuse, TaskAgentSpec};
use crate::worker_pool::{RuntimeName, WorkerPoolSpec};

/// Checks a decoded resource; returns its warnings, or the first fault.
pub(crate) fn validate(resource: &Resource) -> Result<Vec<String>, FieldError> {
    let mut warnings = Vec::new();
    metadata(resource.metadata())?;
    match resource {
        Resource::TaskAgent(agent) => task_agent(&agent.spec, &mut warnings)?,
        Resource::DaemonAgent(agent) => daemon_agent(&agent.spec, &mut warnings)?,
        Resource::WorkerPool(pool) => worker_pool(&pool.spec)?,
        Resource::EgressGateway(g) => egress_validate::gateway(&g.spec)?,
        Resource::EgressL4Route(r) => egress_validate::l4_route(&r.spec)?,
        Resource::CredentialInjectionPolicy(p) => egress_validate::credential_policy(&p.spec)?,
        Resource::AIProviderRoute(r) => egress_validate::ai_route(&r.spec)?,
    }
    Ok(warnings)
}

fn metadata(meta: &ObjectMeta) -> Result<(), FieldError> {
    name("metadata.name", &meta.name)?;
    name("metadata.namespace", &meta.namespace)
}

fn task_agent(spec: &TaskAgentSpec, warnings: &mut Vec<String>) -> Result<(), FieldError> {
    name("spec.workerPoolRef", &spec.worker_pool_ref)?;
    container("spec.template.spec", &spec.template.spec, warnings)?;
    positive("spec.timeout", spec.timeout)?;
    positive("spec.warmPoolIdleTTL", spec.warm_pool_idle_ttl)?;
    if spec.warm_pool_size > 0 && spec.delivery.mode == crate::task_agent::DeliveryMode::Metadata {
        warnings.push(
            "spec.warmPoolSize: ignored: a Metadata-mode agent fetches its event when it starts, \
             so no sandbox is kept warm for it (use delivery mode Stdin for warm starts)"
                .to_string(),
        );
    }
    if let Some(reuse) = &spec.sandbox_reuse {
        sandbox_reuse(spec, reuse)?;
    }
    if spec.time_zone.trim().is_empty() {
        return Err(FieldError::new(
            "spec.timeZone",
            "must not be empty: use an IANA zone name like UTC or Europe/Paris",
        ));
    }
    if let Some(expression) = &spec.schedule {
        if expression.trim().is_empty() {
            return Err(FieldError::new(
                "spec.schedule",
                "must not be empty: use a cron expression like \"*/5 * * * *\", @hourly or \
                 @every 5m, or leave the field out",
            ));
        }
        Schedule::parse(expression, &spec.time_zone).map_err(schedule_error)?;
    }
    log_limit(spec.log_limit.as_ref())?;
    egress_refs(&spec.egress_refs)
}

/// `spec.sandboxReuse` needs sandboxes that wait for their event: Stdin delivery and a warm
/// pool, where a sandbox waits between executions.
fn sandbox_reuse(spec: &TaskAgentSpec, reuse: &SandboxReuse) -> Result<(), FieldError> {
    if !(1..=MAX_REUSE_EXECUTIONS).contains(&reuse.max_executions) {
        return Err(FieldError::new(
            "spec.sandboxReuse.maxExecutions",
            format!("must be between 1 and {MAX_REUSE_EXECUTIONS}; leave it out for 100"),
        ));
    }
    positive("spec.sandboxReuse.maxAge", reuse.max_age)?;
    if spec.delivery.mode == crate::task_agent::DeliveryMode::Metadata {
        return Err(FieldError::new(
            "spec.sandboxReuse",
            "needs spec.delivery.mode Stdin: a Metadata-mode agent asks for its event as it \
             starts, so no sandbox can wait for the next one",
        ));
    }
    if spec.warm_pool_size == 0 {
        return Err(FieldError::new(
            "spec.sandboxReuse",
            "needs spec.warmPoolSize of at least 1: a reused sandbox waits in the warm pool \
             between executions",
        ));
    }
    Ok(())
}

fn worker_pool(spec: &WorkerPoolSpec) -> Result<(), FieldError> {
    if spec.pids_limit == Some(0) {
        return Err(FieldError::new(
            "spec.pidsLimit",
            "must be at least 1: a sandbox needs a process to run its agent; leave the field \
             out for the default of 512",
        ));
    }
    if let Some(options) = &spec.runtime_options {
        if spec.runtime != RuntimeName::Runsc {
            return Err(FieldError::new(
                "spec.runtimeOptions",
                format!(
                    "options are for runsc (gVisor); this pool runs {}: remove the field or \
                     set spec.runtime: runsc",
                    spec.runtime.as_str()
                ),
            ));
        }
        options.validate("spec.runtimeOptions")?;
    }
    Ok(())
}

fn daemon_agent(spec: &DaemonAgentSpec, warnings: &mut Vec<String>) -> Result<(), FieldError> {
    name("spec.workerPoolRef", &spec.worker_pool_ref)?;
    container("spec.template.spec", &spec.template.spec, warnings)?;
    log_limit(spec.log_limit.as_ref())?;
    egress_refs(&spec.egress_refs)
}

/// An agent keeps at most [`MAX_LOG_LIMIT_BYTES`] of logs in all, so one execution cannot
/// be promised more.
fn log_limit(limit: Option<&LogLimit>) -> Result<(), FieldError> {
    match limit {
        Some(limit) if limit.bytes() > MAX_LOG_LIMIT_BYTES => Err(FieldError::new(
            "spec.logLimit",
            format!(
                "{limit} is more than the 64Mi of logs an agent keeps in all: use at most 64Mi"
            ),
        )),
        _ => Ok(()),
    }
}

fn container(
    path: &str,
    spec: &ContainerSpec,
    warnings: &mut Vec<String>,
) -> Result<(), FieldError> {
    if spec.image.trim().is_empty() {
        return Err(FieldError::new(
            format!("{path}.image"),
            "must not be empty: give an image reference like registry.example/word-count:0.1",
        ));
    }
    if spec.command.as_ref().is_some_and(Vec::is_empty) {
        return Err(FieldError::new(
            format!("{path}.command"),
            "must name the program to run, or be left out to use the image ENTRYPOINT",
        ));
    }
    if spec
        .working_dir
        .as_deref()
        .is_some_and(|d| !d.starts_with('/'))
    {
        return Err(FieldError::new(
            format!("{path}.workingDir"),
            "must be an absolute path like /app",
        ));
    }
    for (i, var) in spec.env.iter().enumerate() {
        let var_path = format!("{path}.env[{i}]");
        if var.name.is_empty() || var.name.contains(['=', '\0']) {
            return Err(FieldError::new(
                format!("{var_path}.name"),
                "must be a non-empty variable name without '='",
            ));
        }
        if let Some(value_from) = &var.value_from {
            warnings.extend(value_from_warning(
                &format!("{var_path}.valueFrom"),
                value_from,
            )?);
        }
    }
    Ok(())
}

/// `valueFrom` may only hold `secretKeyRef`, which the guide documents as ignored.
fn value_from_warning(path: &str, value: &serde_json::Value) -> Result<Vec<String>, FieldError> {
    let Some(fields) = value.as_object() else {
        return Err(FieldError::new(
            path,
            "must be a mapping with secretKeyRef (which clrk ignores); use value instead",
        ));
    };
    if let Some(unknown) = fields.keys().find(|k| *k != "secretKeyRef") {
        return Err(FieldError::new(
            format!("{path}.{unknown}"),
            "unknown field (expected one of: secretKeyRef)",
        ));
    }
    Ok(fields
        .keys()
        .map(|key| {
            format!(
                "{path}.{key} is ignored: clrk never puts secrets in a sandbox; use a literal \
                 value, or credential injection on the egress side"
            )
        })
        .collect())
}

fn egress_refs(refs: &[EgressRef]) -> Result<(), FieldError> {
    for (i, r) in refs.iter().enumerate() {
        name(&format!("spec.egressRefs[{i}].gatewayRef"), &r.gateway_ref)?;
    }
    Ok(())
}

/// `Schedule::parse` names its field; keep that path and the rest as the message.
fn schedule_error(err: ManifestError) -> FieldError {
    match err {
        ManifestError::InvalidSchedule {
            field,
            input,
            reason,
        } => FieldError::new(field, format!("\"{input}\" is not valid: {reason}")),
        other => FieldError::new("spec.schedule", other.to_string()),
    }
}
