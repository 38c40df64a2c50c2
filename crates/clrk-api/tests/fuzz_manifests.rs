//! Fuzzing the manifest parser with property tests: arbitrary text, and valid manifests of every
//! kind (tests/fixtures) mutated as text and as structure. Whatever comes in, parsing returns
//! documents or an error naming the file, never panics; what it accepts survives storage, and
//! the same document reads the same as a value, as JSON text and as YAML text.
//!
//! The number of cases per property is small enough for CI; `PROPTEST_CASES` raises it for a
//! longer run (docs/security.md).

use clrk_api::{Document, ManifestError, Resource, parse_manifests, parse_value};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Map, Value};

const WORD_COUNT: &str = include_str!("fixtures/word-count.yaml");
const EVERY_KIND: &str = include_str!("fixtures/every-kind.yaml");

/// Longest error message accepted for an input of `len` bytes: a message may quote the
/// offending value, but must not grow beyond the input it describes.
fn max_message(len: usize) -> usize {
    1024 + 2 * len
}

/// `cases` per property, unless `PROPTEST_CASES` asks for another number.
fn config(cases: u32) -> Config {
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}

/// The documents of the fixtures, decoded but not validated.
fn seeds() -> Vec<Value> {
    let mut seeds: Vec<Value> = serde_saphyr::from_multiple(EVERY_KIND).unwrap();
    seeds.extend(serde_saphyr::from_multiple::<Value>(WORD_COUNT).unwrap());
    seeds
}

/// What parsing `len` bytes of text gave must be a valid outcome: documents that survive
/// storage, or a bounded error that names the file.
fn check(source: &str, len: usize, outcome: &Result<Vec<Document>, ManifestError>) {
    match outcome {
        Ok(docs) => {
            assert!(
                !docs.is_empty(),
                "a parse without documents must be an error"
            );
            for (i, doc) in docs.iter().enumerate() {
                assert_eq!(doc.index, i + 1);
                survives_storage(&doc.resource);
            }
        }
        Err(error) => {
            let message = error.to_string();
            assert!(message.starts_with(source), "{message}");
            assert!(
                message.len() <= max_message(len),
                "a {len}-byte input gave a {}-byte message",
                message.len()
            );
        }
    }
}

/// An accepted resource reads back from its stored form as itself.
fn survives_storage(resource: &Resource) {
    let stored = resource.to_stored();
    let again = Resource::from_stored(&stored)
        .unwrap_or_else(|e| panic!("the stored form of an accepted {resource:?} is refused: {e}"));
    assert_eq!(&again, resource);
}

/// Text that looks a little like YAML or JSON, or not at all.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<Vec<u8>>().prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        any::<String>(),
        "[ \n\t:,\\-?&*!|>'\"{}\\[\\]#%@.~0-9a-zA-Z\u{feff}]{0,300}",
    ]
}

/// A value to put where a field was: every JSON type, with the edge cases of the fields'
/// own formats (durations, quantities, names, CIDRs, cron).
fn replacement() -> impl Strategy<Value = Value> {
    let scalar = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(vec![
            "",
            "0",
            "-1",
            "1e400",
            "0s",
            "-1s",
            "1h2m3.5s",
            "9999999999h",
            "1.5",
            "500m",
            "0.0001",
            "64Ei",
            "1e18",
            "999999999999Ti",
            "a/b",
            "-a-",
            "A",
            "x".repeat(64).leak(),
            "10.0.0.0/33",
            "::/0",
            "*",
            "*.",
            "@every 0s",
            "* * * * * * *",
            "host:",
            "Never",
            "deny-all",
            "Terminate",
            "anthropic",
            "TokenBudget",
            "clrk.apoxy.dev/v1alpha1",
        ])
        .prop_map(Value::from),
        "\\PC{0,40}".prop_map(Value::from),
    ];
    scalar.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{0,12}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// One structural change at the node `at` picks (by depth-first position).
#[derive(Debug, Clone)]
enum Mutation {
    Replace(Value),
    Remove,
    AddField(String, Value),
    WrapInList,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => replacement().prop_map(Mutation::Replace),
        2 => Just(Mutation::Remove),
        1 => ("[a-zA-Z]{1,12}", replacement()).prop_map(|(k, v)| Mutation::AddField(k, v)),
        1 => Just(Mutation::WrapInList),
    ]
}

/// Number of nodes in `value`, itself included.
fn count(value: &Value) -> usize {
    1 + match value {
        Value::Array(items) => items.iter().map(count).sum(),
        Value::Object(fields) => fields.values().map(count).sum(),
        _ => 0,
    }
}

/// Applies `mutation` at the node numbered `target` (depth first, the root is 0). Removing
/// the root or an array item's parent is a replacement by null.
fn apply(value: &mut Value, target: usize, mutation: &Mutation) {
    fn walk(value: &mut Value, target: &mut usize, mutation: &Mutation) -> bool {
        if *target == 0 {
            match mutation {
                Mutation::Replace(v) => *value = v.clone(),
                Mutation::Remove => *value = Value::Null,
                Mutation::AddField(k, v) => match value {
                    Value::Object(fields) => {
                        fields.insert(k.clone(), v.clone());
                    }
                    other => *other = v.clone(),
                },
                Mutation::WrapInList => *value = Value::Array(vec![value.take()]),
            }
            return true;
        }
        *target -= 1;
        match value {
            Value::Array(items) => items.iter_mut().any(|v| walk(v, target, mutation)),
            Value::Object(fields) => {
                let keys: Vec<String> = fields.keys().cloned().collect();
                for key in keys {
                    // A removed field disappears rather than becoming null.
                    if *target == 0 && matches!(mutation, Mutation::Remove) {
                        fields.remove(&key);
                        return true;
                    }
                    if walk(fields.get_mut(&key).unwrap(), target, mutation) {
                        return true;
                    }
                }
                false
            }
            _ => false,
        }
    }
    let mut target = target;
    walk(value, &mut target, mutation);
}

/// A seed document with up to four mutations.
fn mutated_document() -> impl Strategy<Value = Value> {
    let seeds = seeds();
    (
        0..seeds.len(),
        prop::collection::vec((any::<prop::sample::Index>(), mutation()), 1..5),
    )
        .prop_map(move |(seed, mutations)| {
            let mut doc = seeds[seed].clone();
            for (at, mutation) in &mutations {
                let target = at.index(count(&doc));
                apply(&mut doc, target, mutation);
            }
            doc
        })
}

/// A byte-level change to a text: cut, insert, duplicate or overwrite a range.
fn mutated_text() -> impl Strategy<Value = String> {
    let base = format!("{EVERY_KIND}---\n{WORD_COUNT}");
    let edit = (
        any::<prop::sample::Index>(),
        0usize..64,
        prop::collection::vec(any::<u8>(), 0..16),
        0u8..4,
    );
    prop::collection::vec(edit, 1..6).prop_map(move |edits| {
        let mut bytes = base.clone().into_bytes();
        for (at, len, insert, how) in edits {
            let start = at.index(bytes.len() + 1);
            let end = (start + len).min(bytes.len());
            match how {
                0 => {
                    bytes.drain(start..end);
                }
                1 => {
                    bytes.splice(start..start, insert);
                }
                2 => {
                    let copy = bytes[start..end].to_vec();
                    bytes.splice(start..start, copy);
                }
                _ => {
                    bytes.splice(start..end, insert);
                }
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Whether two outcomes agree: both errors, or the same resources.
fn same_resources(
    a: &Result<Vec<Document>, ManifestError>,
    b: &Result<Vec<Document>, ManifestError>,
) -> bool {
    match (a, b) {
        (Ok(a), Ok(b)) => a
            .iter()
            .map(|d| &d.resource)
            .eq(b.iter().map(|d| &d.resource)),
        (Err(_), Err(_)) => true,
        _ => false,
    }
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn fuzz_arbitrary_text_is_parsed_or_refused(text in text()) {
        let outcome = parse_manifests("fuzz.yaml", &text);
        check("fuzz.yaml", text.len(), &outcome);
    }

    #[test]
    fn fuzz_mutated_manifest_text_is_parsed_or_refused(text in mutated_text()) {
        let outcome = parse_manifests("fuzz.yaml", &text);
        check("fuzz.yaml", text.len(), &outcome);
    }

    /// A mutated document is judged the same whether it arrives as a value (as the server
    /// receives it), as JSON text or as YAML text.
    #[test]
    fn fuzz_mutated_manifest_reads_the_same_as_value_json_and_yaml(doc in mutated_document()) {
        let json = serde_json::to_string(&doc).unwrap();
        let as_value = parse_value("fuzz.yaml", 1, &doc).map(|d| vec![d]);
        check("fuzz.yaml", json.len(), &as_value);
        let as_json = parse_manifests("fuzz.yaml", &json);
        check("fuzz.yaml", json.len(), &as_json);
        let yaml = serde_saphyr::to_string(&doc).unwrap();
        let as_yaml = parse_manifests("fuzz.yaml", &yaml);
        check("fuzz.yaml", yaml.len(), &as_yaml);
        // A JSON array is a list of documents, a YAML sequence one document that is not a
        // mapping: only a mapping means the same in all three forms.
        if !doc.is_object() {
            return Ok(());
        }
        prop_assert!(
            same_resources(&as_value, &as_json),
            "as a value: {as_value:?}\nas JSON text: {as_json:?}"
        );
        prop_assert!(
            same_resources(&as_value, &as_yaml),
            "as a value: {as_value:?}\nas YAML text:\n{yaml}\n{as_yaml:?}"
        );
    }
}

/// The seeds themselves are valid: mutations start from manifests that parse.
#[test]
fn every_seed_is_valid() {
    for seed in seeds() {
        let doc = parse_value("seed", 1, &seed).unwrap_or_else(|e| panic!("{e}"));
        survives_storage(&doc.resource);
    }
}

/// Found by the fuzzer: JSON text read a float one unit in the last place off (serde_json's
/// default float parsing), so `scheduleInput` reached the agent changed, and differently from
/// the same manifest in YAML.
#[test]
fn json_floats_read_exactly() {
    let text = "-1.9242461383894626e+213";
    let json = format!(
        r#"{{"apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "TaskAgent",
            "metadata": {{"name": "a"}},
            "spec": {{"scheduleInput": {{"x": {text}}}, "template": {{"spec": {{"image": "a:1"}}}}}}}}"#
    );
    let exact: f64 = text.parse().unwrap();
    let input = |docs: Vec<Document>| match &docs[0].resource {
        Resource::TaskAgent(agent) => agent.spec.schedule_input["x"].as_f64(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        input(parse_manifests("a.json", &json).unwrap()),
        Some(exact)
    );
}
