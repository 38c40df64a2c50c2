//! The `status.conditions` of an agent or an egress route or policy: the warnings `clrk apply`
//! printed that still hold, computed when the object is read from its stored manifest and what the store holds now, so any server
//! of a cluster answers the same and a condition clears once the missing object is applied.
//! Nothing is stored.

use clrk_api::Resource;
use clrk_wire::Condition;
use serde_json::Value;

use crate::references::{Known, warnings};

/// The source named should a stored manifest no longer parse.
const SOURCE: &str = "stored manifest";

/// The conditions that are `"False"` for the agent or egress object whose stored manifest is
/// `manifest`.
pub(crate) fn of_manifest(known: &Known, manifest: &Value) -> Vec<Condition> {
    // A stored manifest passed validation when it was applied; one an older server wrote
    // that no longer does has nothing to say here.
    let Ok(doc) = clrk_api::parse_value(SOURCE, 1, manifest) else {
        return Vec::new();
    };
    let mut conditions = Vec::new();
    let references = warnings(known, &doc.resource);
    if !references.is_empty() {
        conditions.push(condition("ReferencesResolved", "Unresolved", &references));
    }
    if matches!(
        doc.resource,
        Resource::TaskAgent(_) | Resource::DaemonAgent(_)
    ) && !doc.warnings.is_empty()
    {
        conditions.push(condition("SpecHonoured", "FieldsIgnored", &doc.warnings));
    }
    conditions
}

fn condition(kind: &str, reason: &str, warnings: &[String]) -> Condition {
    Condition {
        kind: kind.to_string(),
        status: "False".to_string(),
        reason: reason.to_string(),
        message: warnings.join("; "),
    }
}
