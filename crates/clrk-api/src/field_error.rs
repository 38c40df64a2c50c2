//! A fault at one field of a document, and the translation of serde's wording into ours.

use serde_path_to_error::Error as PathError;

/// A fault at one field path of a document, before the file and document are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldError {
    pub path: String,
    pub message: String,
}

impl FieldError {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            path: path.into(),
            message: message.into(),
        }
    }

    /// Rewords a serde error so it names the full field path and says what is allowed.
    pub(crate) fn from_serde(err: &PathError<serde_json::Error>, prefix: &str) -> FieldError {
        let inner = err.inner().to_string();
        let path = join(prefix, &err.path().to_string());
        if let Some(field) = between(&inner, "missing field `", "`") {
            return FieldError::new(join(&path, field), "required field is missing");
        }
        if let Some(rest) = inner.strip_prefix("unknown field `") {
            let field = rest.split('`').next().unwrap_or_default();
            // serde_path_to_error already ends the path with the unknown key; keep it once.
            let path = if path == field || path.ends_with(&format!(".{field}")) {
                path
            } else {
                join(&path, field)
            };
            let expected = match rest.split_once("expected ") {
                Some((_, list)) => format!("expected one of: {}", backticked_list(list)),
                None => "no fields are allowed here".to_owned(),
            };
            return FieldError::new(path, format!("unknown field ({expected})"));
        }
        if let Some(rest) = inner.strip_prefix("unknown variant `") {
            let (value, list) = rest.split_once('`').unwrap_or((rest, ""));
            let list = list.split_once("expected ").map_or("", |(_, l)| l);
            return FieldError::new(
                path,
                format!(
                    "unknown value \"{value}\" (expected one of: {})",
                    backticked_list(list)
                ),
            );
        }
        FieldError::new(path, plain_expected(&inner))
    }
}

/// `a.b` + `c` = `a.b.c`; an empty or root path (`.`) adds nothing.
pub(crate) fn join(prefix: &str, rest: &str) -> String {
    match (prefix, rest) {
        (p, "" | ".") => p.to_owned(),
        ("", r) => r.to_owned(),
        (p, r) if r.starts_with('[') => format!("{p}{r}"),
        (p, r) => format!("{p}.{r}"),
    }
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let rest = s.strip_prefix(start)?;
    rest.split(end).next()
}

/// "one of `a`, `b`" or "`a`" becomes "a, b".
fn backticked_list(list: &str) -> String {
    list.split('`')
        .skip(1)
        .step_by(2)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Replaces Rust type names in serde's "expected …" with words a manifest author knows.
fn plain_expected(message: &str) -> String {
    let replacements = [
        (
            "expected u32",
            "expected a whole number from 0 to 4294967295",
        ),
        ("expected u64", "expected a whole number of 0 or more"),
        ("expected a string", "expected a string (quote it in YAML)"),
        ("expected a sequence", "expected a list"),
        ("expected struct ", "expected a mapping: "),
        ("expected a map", "expected a mapping"),
    ];
    replacements
        .iter()
        .find(|(from, _)| message.contains(from))
        .map_or_else(
            || message.to_owned(),
            |(from, to)| message.replacen(from, to, 1),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_paths() {
        assert_eq!(join("", "spec"), "spec");
        assert_eq!(join("spec", "."), "spec");
        assert_eq!(join("spec.env", "[0]"), "spec.env[0]");
        assert_eq!(join("spec", "template.spec"), "spec.template.spec");
    }

    #[test]
    fn lists_lose_their_backticks() {
        assert_eq!(backticked_list("one of `a`, `b`"), "a, b");
        assert_eq!(backticked_list("`a`"), "a");
    }

    #[test]
    fn rust_type_names_become_words() {
        assert_eq!(
            plain_expected("invalid type: string \"x\", expected u32"),
            "invalid type: string \"x\", expected a whole number from 0 to 4294967295"
        );
        assert_eq!(
            plain_expected("invalid type: integer `1`, expected a string"),
            "invalid type: integer `1`, expected a string (quote it in YAML)"
        );
    }
}
