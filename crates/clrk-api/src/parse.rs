//! From text to validated documents: YAML or JSON, one or many documents per file.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::API_VERSION;
use crate::error::ManifestError;
use crate::field_error::FieldError;
use crate::kind::Kind;
use crate::resource::Resource;
use crate::validate::validate;

/// The only keys a document may have at its top level. `status` is what `clrk agents get -o
/// yaml` prints beside the spec; it is ignored, as `kubectl apply` ignores it.
const TOP_LEVEL_FIELDS: [&str; 5] = ["apiVersion", "kind", "metadata", "spec", "status"];

/// Top-level keys read by [`header`], or ignored, rather than decoded into the object.
const NOT_IN_BODY: [&str; 3] = ["apiVersion", "kind", "status"];

/// One parsed document of a manifest file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// 1-based position in the file (empty YAML documents are not counted).
    pub index: usize,
    /// The validated object.
    pub resource: Resource,
    /// Accepted but ignored settings, to show to the user (`clrk apply` prints them).
    pub warnings: Vec<String>,
}

/// Parses and validates every document of a YAML or JSON text.
///
/// Text whose first non-blank character is `{` or `[` is read as JSON: one object, or an
/// array of objects. Anything else is YAML, with documents separated by `---`; empty
/// documents are skipped. A document of `kind: List` (as `clrk get` and `kubectl get` print
/// several objects) stands for its `items`, each counted as a document. `source` is the file
/// name used in messages. Each document's first
/// fault is returned, all of them at once when several documents have one
/// ([`ManifestError::Several`]); a file without any document is an error.
///
/// ```
/// let text = "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: TaskAgent\n\
///             metadata: {name: word-count}\nspec: {template: {spec: {image: wc:0.1}}}\n";
/// let docs = clrk_api::parse_manifests("taskagent.yaml", text).unwrap();
/// assert_eq!(docs[0].resource.metadata().name, "word-count");
///
/// let err = clrk_api::parse_manifests("taskagent.yaml", &text.replace("image:", "imagee:"))
///     .unwrap_err();
/// assert!(err.to_string().starts_with(
///     "taskagent.yaml: document 1: spec.template.spec.imagee: unknown field"));
/// ```
pub fn parse_manifests(source: &str, text: &str) -> Result<Vec<Document>, ManifestError> {
    let values = expand_lists(decode(source, text)?);
    if values.is_empty() {
        return Err(ManifestError::Empty {
            file: source.to_owned(),
        });
    }
    let (documents, mut errors): (Vec<_>, Vec<_>) = values
        .iter()
        .enumerate()
        .map(|(i, value)| parse_value(source, i + 1, value))
        .partition(Result::is_ok);
    match errors.len() {
        0 => Ok(documents.into_iter().map(Result::unwrap).collect()),
        1 => Err(errors.pop().expect("one error").unwrap_err()),
        _ => Err(ManifestError::Several(
            errors.into_iter().map(Result::unwrap_err).collect(),
        )),
    }
}

// Reading a stored manifest back is parsing, so it lives here: `resource` stays below `parse`.
impl Resource {
    /// Reads back what [`Resource::to_stored`] wrote, validating it again.
    pub fn from_stored(v: &Value) -> Result<Resource, ManifestError> {
        parse_value(STORED_SOURCE, 1, v).map(|doc| doc.resource)
    }
}

/// The source named in messages about a stored manifest.
const STORED_SOURCE: &str = "stored manifest";

/// Parses and validates one already-decoded document (the server uses it to re-check what
/// the CLI sent). `index` is the 1-based document position used in messages.
///
/// ```
/// let value = serde_json::json!({
///     "apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "WorkerPool",
///     "metadata": {"name": "default"}, "spec": {"runtime": "runc"}
/// });
/// let doc = clrk_api::parse_value("request", 1, &value).unwrap();
/// assert_eq!(doc.resource.kind(), clrk_api::Kind::WorkerPool);
/// ```
pub fn parse_value(source: &str, index: usize, value: &Value) -> Result<Document, ManifestError> {
    let at = |e: FieldError| ManifestError::Field {
        file: source.to_owned(),
        document: index,
        path: e.path,
        message: e.message,
    };
    let Some(fields) = value.as_object() else {
        return Err(ManifestError::NotAMapping {
            file: source.to_owned(),
            document: index,
        });
    };
    let kind = header(fields).map_err(at)?;
    let body: Map<String, Value> = fields
        .iter()
        .filter(|(key, _)| !NOT_IN_BODY.contains(&key.as_str()))
        .map(|(key, v)| (key.clone(), v.clone()))
        .collect();
    let body = Value::Object(body);
    let resource = match kind {
        Kind::TaskAgent => Resource::TaskAgent(decode_body(&body).map_err(at)?),
        Kind::DaemonAgent => Resource::DaemonAgent(decode_body(&body).map_err(at)?),
        Kind::WorkerPool => Resource::WorkerPool(decode_body(&body).map_err(at)?),
        Kind::EgressGateway => Resource::EgressGateway(decode_body(&body).map_err(at)?),
        Kind::EgressL4Route => Resource::EgressL4Route(decode_body(&body).map_err(at)?),
        Kind::CredentialInjectionPolicy => {
            Resource::CredentialInjectionPolicy(decode_body(&body).map_err(at)?)
        }
        Kind::AIProviderRoute => Resource::AIProviderRoute(decode_body(&body).map_err(at)?),
    };
    let warnings = validate(&resource).map_err(at)?;
    Ok(Document {
        index,
        resource,
        warnings,
    })
}

/// Checks apiVersion, kind and the top-level keys; returns the kind.
fn header(fields: &Map<String, Value>) -> Result<Kind, FieldError> {
    match fields.get("apiVersion") {
        None => return Err(FieldError::new("apiVersion", "required field is missing")),
        Some(Value::String(v)) if v == API_VERSION => {}
        Some(other) => {
            return Err(FieldError::new(
                "apiVersion",
                format!("{other} is not supported (expected {API_VERSION})"),
            ));
        }
    }
    let kind = match fields.get("kind") {
        None => return Err(FieldError::new("kind", "required field is missing")),
        Some(Value::String(name)) => Kind::ALL.into_iter().find(|k| k.as_str() == name),
        Some(_) => None,
    };
    let kind = kind.ok_or_else(|| {
        FieldError::new(
            "kind",
            format!(
                "unknown kind {} (expected {})",
                fields["kind"],
                Kind::expected()
            ),
        )
    })?;
    if let Some(unknown) = fields
        .keys()
        .find(|k| !TOP_LEVEL_FIELDS.contains(&k.as_str()))
    {
        return Err(FieldError::new(
            unknown.as_str(),
            format!(
                "unknown field (expected one of: {})",
                TOP_LEVEL_FIELDS.join(", ")
            ),
        ));
    }
    Ok(kind)
}

/// Replaces each `kind: List` document with its `items`.
fn expand_lists(values: Vec<Value>) -> Vec<Value> {
    let mut out = Vec::with_capacity(values.len());
    for value in values {
        let is_list = value.get("kind").and_then(Value::as_str) == Some("List");
        match value {
            Value::Object(mut fields)
                if is_list && fields.get("items").is_some_and(Value::is_array) =>
            {
                if let Some(Value::Array(items)) = fields.remove("items") {
                    out.extend(items);
                }
            }
            other => out.push(other),
        }
    }
    out
}

fn decode_body<T: DeserializeOwned>(body: &Value) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(body).map_err(|e| FieldError::from_serde(&e, ""))
}

/// Splits the text into one JSON value per non-empty document.
fn decode(source: &str, text: &str) -> Result<Vec<Value>, ManifestError> {
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        return decode_json(source, text);
    }
    serde_saphyr::from_multiple::<Value>(text).map_err(|e| yaml_error(source, &e))
}

fn decode_json(source: &str, text: &str) -> Result<Vec<Value>, ManifestError> {
    let value: Value = serde_json::from_str(text.trim_start_matches('\u{feff}')).map_err(|e| {
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        let message = e.to_string();
        ManifestError::Json {
            file: source.to_owned(),
            line: e.line() as u64,
            column: e.column() as u64,
            message: message.strip_suffix(&suffix).unwrap_or(&message).to_owned(),
        }
    })?;
    Ok(match value {
        Value::Array(items) => items,
        other => vec![other],
    })
}

fn yaml_error(source: &str, err: &serde_saphyr::Error) -> ManifestError {
    let (line, column) = err.location().map_or((0, 0), |l| (l.line(), l.column()));
    let plain = err
        .without_snippet()
        .render_with_options(serde_saphyr::render_options! {
            snippets: serde_saphyr::SnippetMode::Off,
        });
    let located = format!(" at line {line}, column {column}");
    let message = plain.strip_suffix(&located).unwrap_or(&plain);
    // The parser's advice on duplicate keys speaks to Rust developers, not manifest authors.
    let message = message
        .split(", set DuplicateKeyPolicy")
        .next()
        .unwrap_or(message);
    ManifestError::Yaml {
        file: source.to_owned(),
        line,
        column,
        message: message.to_owned(),
    }
}
