//! Fuzzing the envelope builder with property tests: any method, path, query, content type,
//! body and `ce-` headers a client can send give either a 400-class error that says what is
//! wrong, or a CloudEvents 1.0 JSON envelope that reads back as an event and writes out the
//! same, carries the body unchanged and keeps the attributes clrk computes (id, source, type,
//! revision, method, URL, query).
//!
//! The number of cases per property is small enough for CI; `PROPTEST_CASES` raises it for a
//! longer run (docs/security.md).

use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use clrk_dispatch::DispatchError;
use clrk_dispatch::envelope::{INVOKE_TYPE, RequestData, Trigger, is_json, media_type};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::Value;

/// `cases` per property, unless `PROPTEST_CASES` asks for another number.
fn config(cases: u32) -> Config {
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}

/// Header-ish text: printable and not, ASCII and not.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,24}",
        "\\PC{0,24}",
        any::<String>().prop_map(|s| s.chars().take(24).collect()),
    ]
}

fn content_type() -> impl Strategy<Value = Option<String>> {
    let known = prop::sample::select(vec![
        "application/json",
        "APPLICATION/JSON; charset=utf-8",
        "application/cloudevents+json",
        "application/vnd.api+json ; q=1",
        "text/plain",
        "text/csv;charset=latin1",
        "TEXT/HTML",
        "application/octet-stream",
        "multipart/form-data; boundary=x",
        "",
        ";",
        "+json",
    ])
    .prop_map(str::to_owned);
    prop::option::of(prop_oneof![3 => known, 1 => text()])
}

/// Bodies: bytes, UTF-8 text, and JSON values (valid or cut short).
fn body() -> impl Strategy<Value = Bytes> {
    let json = any::<(String, i64, f64, bool)>().prop_map(|(s, i, f, b)| {
        serde_json::json!({"text": s, "n": i, "x": f, "ok": b, "list": [s, null, {"k": i}]})
            .to_string()
    });
    prop_oneof![
        1 => Just(String::new().into_bytes()),
        2 => prop::collection::vec(any::<u8>(), 0..64),
        2 => "\\PC{0,64}".prop_map(String::into_bytes),
        3 => json.clone().prop_map(String::into_bytes),
        1 => (json, any::<prop::sample::Index>())
            .prop_map(|(j, at)| j.as_bytes()[..at.index(j.len())].to_vec()),
        1 => prop::sample::select(vec!["null", "1", "\"s\"", "[]", "{}", "1e400", "-0", "\"\\ud800\""])
            .prop_map(|s| s.as_bytes().to_vec()),
    ]
    .prop_map(Bytes::from)
}

/// `ce-` header names and values, as the ingress hands them over (lower-cased names).
fn overrides() -> impl Strategy<Value = Vec<(String, String)>> {
    let name = prop_oneof![
        prop::sample::select(vec![
            "specversion",
            "id",
            "source",
            "type",
            "subject",
            "time",
            "datacontenttype",
            "dataschema",
            "data",
            "data_base64",
            "clrkrevision",
            "httpmethod",
            "httpurl",
            "httpquery",
            "tenant",
            "traceparent",
            "x1",
            "",
            "a-b",
            "UPPER",
            "ünï",
        ])
        .prop_map(str::to_owned),
        "[a-z0-9]{1,12}",
        text(),
    ];
    let value = prop_oneof![
        text(),
        prop::sample::select(vec![
            "2026-01-02T03:04:05Z",
            "2026-01-02T03:04:05.123456789+05:30",
            "1990-12-31T23:59:60Z",
            "0000-01-01T00:00:00-23:59",
            "9999-12-31T23:59:59.999999999+23:59",
            "2026-02-30T00:00:00Z",
            "not a time",
        ])
        .prop_map(str::to_owned),
    ];
    prop::collection::vec((name, value), 0..5)
}

fn trigger() -> impl Strategy<Value = Trigger> {
    let request = (text(), text(), text(), content_type(), body(), overrides()).prop_map(
        |(method, path, query, content_type, body, overrides)| RequestData {
            method,
            path,
            query,
            content_type,
            body,
            overrides,
        },
    );
    (
        (text(), "[a-z0-9-]{1,12}", "[a-z0-9-]{1,12}", text()),
        prop::option::of(text()),
        request,
        0i64..=253_402_300_799,
    )
        .prop_map(
            |((id, namespace, name, revision), subject, request, secs)| Trigger {
                execution_id: id,
                namespace,
                name,
                revision,
                subject,
                request,
                time: DateTime::<Utc>::from_timestamp(secs, 0).unwrap(),
            },
        )
}

/// Everything the client sent, in bytes: the bound an envelope's size is held to.
fn input_size(t: &Trigger) -> usize {
    let r = &t.request;
    let strings = [
        &t.execution_id,
        &t.namespace,
        &t.name,
        &t.revision,
        &r.method,
        &r.path,
        &r.query,
    ];
    strings.iter().map(|s| s.len()).sum::<usize>()
        + t.subject.as_ref().map_or(0, String::len)
        + r.content_type.as_ref().map_or(0, String::len)
        + r.overrides
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
        + r.body.len()
}

/// The envelope's attributes, without its data.
fn without_data(mut envelope: Value) -> Value {
    if let Some(fields) = envelope.as_object_mut() {
        fields.remove("data");
        fields.remove("data_base64");
    }
    envelope
}

/// Whether a `ce-` header by this name may be refused.
fn refusable(name: &str, value: &str) -> bool {
    match name {
        "time" => DateTime::parse_from_rfc3339(value).is_err(),
        "datacontenttype" | "dataschema" | "data" | "data_base64" => true,
        // What clrk sets itself: a header for it may be ignored or refused.
        "specversion" | "id" | "source" | "type" | "clrkrevision" | "httpmethod" | "httpurl"
        | "httpquery" => true,
        "subject" => false,
        _ => !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
    }
}

fn check(t: &Trigger) -> Result<(), TestCaseError> {
    let r = &t.request;
    let envelope = match t.envelope() {
        Ok(envelope) => envelope,
        Err(DispatchError::InvalidJsonBody(message)) => {
            let declared = r.content_type.as_deref().map(media_type);
            prop_assert!(declared.is_some_and(|m| is_json(&m)), "{message}");
            prop_assert!(
                serde_json::from_slice::<Value>(&r.body).is_err(),
                "{message}"
            );
            return Ok(());
        }
        Err(DispatchError::BadHeader(message)) => {
            prop_assert!(message.starts_with("header ce-"), "{message}");
            prop_assert!(
                r.overrides.iter().any(|(k, v)| refusable(k, v)),
                "refused without a refusable header: {message}"
            );
            return Ok(());
        }
        Err(other) => return Err(TestCaseError::fail(format!("unexpected error: {other:?}"))),
    };

    // A CloudEvents 1.0 event, with clrk's id, whose attributes read back as an event and
    // write out the same. The data is checked below against the JSON format's own rule (a
    // JSON media type, in any case and with any parameters, carries a JSON value): the
    // CloudEvents SDK's reader only knows lower-case types without parameters after `+json`.
    prop_assert_eq!(&envelope["specversion"], "1.0");
    // What clrk computes stays clrk's, whatever `ce-` headers say.
    let computed = [
        ("id", t.execution_id.clone()),
        ("source", t.source()),
        ("type", INVOKE_TYPE.to_owned()),
        ("clrkrevision", t.revision.clone()),
        ("httpmethod", r.method.clone()),
        ("httpurl", r.path.clone()),
        ("httpquery", r.query.clone()),
    ];
    for (attribute, value) in computed {
        prop_assert_eq!(&envelope[attribute], &Value::from(value), "{}", attribute);
    }
    let attributes = without_data(envelope.clone());
    let event: cloudevents::Event = serde_json::from_value(attributes.clone()).map_err(|e| {
        TestCaseError::fail(format!("the envelope is not an event: {e}\n{envelope}"))
    })?;
    prop_assert_eq!(serde_json::to_value(&event).unwrap(), attributes);

    // The body, unchanged, in the one place its content type says.
    let data = envelope.get("data");
    let data_base64 = envelope.get("data_base64");
    if r.body.is_empty() {
        prop_assert!(data.is_none() && data_base64.is_none(), "{envelope}");
    } else {
        match (data, data_base64) {
            (Some(data), None) => {
                let ct = media_type(r.content_type.as_deref().unwrap_or_default());
                if is_json(&ct) {
                    let body: Value = serde_json::from_slice(&r.body).unwrap();
                    prop_assert_eq!(data, &body);
                } else {
                    prop_assert!(ct.starts_with("text/"), "{envelope}");
                    prop_assert_eq!(data.as_str().map(str::as_bytes), Some(&r.body[..]));
                }
            }
            (None, Some(encoded)) => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(encoded.as_str().unwrap_or_default())
                    .unwrap();
                prop_assert_eq!(&decoded[..], &r.body[..]);
            }
            _ => prop_assert!(false, "body neither in data nor data_base64: {envelope}"),
        }
    }

    // Bounded: JSON escapes a byte in at most 6 (\u00XX), base64 makes 3 bytes 4.
    let size = envelope.to_string().len();
    prop_assert!(
        size <= 1024 + 6 * input_size(t),
        "{size}-byte envelope from {} bytes of request",
        input_size(t)
    );
    Ok(())
}

proptest! {
    #![proptest_config(config(20000))]

    #[test]
    fn fuzz_envelope_is_an_error_or_a_cloudevent_that_round_trips(t in trigger()) {
        check(&t)?;
    }
}
