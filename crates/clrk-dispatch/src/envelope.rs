//! The CloudEvents 1.0 structured-mode envelope an execution receives (SPECIFICATION §4).

use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use cloudevents::Event;
use cloudevents::event::{AttributesWriter, Data, EventBuilder, EventBuilderV10};

use crate::error::DispatchError;

/// `type` of every invocation envelope.
pub const INVOKE_TYPE: &str = "dev.apoxy.clrk.taskagent.invoke";
/// `type` of a response wrapped for `Accept: application/cloudevents+json`.
pub const RESPONSE_TYPE: &str = "dev.apoxy.clrk.taskagent.response";

/// The HTTP request behind a trigger, as far as the envelope needs it.
#[derive(Debug, Clone, Default)]
pub struct RequestData {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: Option<String>,
    pub body: Bytes,
    /// `ce-<attr>` request headers, lower-cased attribute names without the prefix.
    pub overrides: Vec<(String, String)>,
}

/// Everything about one trigger that ends up in the envelope.
#[derive(Debug, Clone)]
pub struct Trigger {
    /// The execution id, which becomes the envelope `id`.
    pub execution_id: String,
    pub namespace: String,
    pub name: String,
    /// Revision the execution runs on (`clrkrevision` extension).
    pub revision: String,
    /// `X-Clrk-Trigger`; `subject` is omitted when `None`.
    pub subject: Option<String>,
    pub request: RequestData,
    pub time: DateTime<Utc>,
}

impl Trigger {
    /// `clrk://<namespace>/<name>`.
    pub fn source(&self) -> String {
        format!("clrk://{}/{}", self.namespace, self.name)
    }

    /// Builds the envelope. A body declared JSON that does not parse is a
    /// [`DispatchError::InvalidJsonBody`].
    ///
    /// ```
    /// # use clrk_dispatch::envelope::Trigger;
    /// # use clrk_dispatch::envelope::RequestData;
    /// let t = Trigger {
    ///     execution_id: "e1".into(), namespace: "default".into(), name: "wc".into(),
    ///     revision: "wc-00001".into(), subject: Some("http".into()),
    ///     request: RequestData {
    ///         method: "POST".into(), path: "/".into(),
    ///         content_type: Some("application/json".into()),
    ///         body: bytes::Bytes::from_static(br#"{"text":"hi"}"#),
    ///         ..RequestData::default()
    ///     },
    ///     time: chrono::Utc::now(),
    /// };
    /// let env = t.envelope().unwrap();
    /// assert_eq!(env["data"]["text"], "hi");
    /// assert_eq!(env["source"], "clrk://default/wc");
    /// ```
    pub fn envelope(&self) -> Result<serde_json::Value, DispatchError> {
        let request = &self.request;
        let mut builder = EventBuilderV10::new()
            .id(self.execution_id.clone())
            .source(self.source())
            .ty(INVOKE_TYPE)
            .time(self.time)
            .extension("clrkrevision", self.revision.clone())
            .extension("httpmethod", request.method.clone())
            .extension("httpurl", request.path.clone())
            .extension("httpquery", request.query.clone());
        if let Some(subject) = &self.subject {
            builder = builder.subject(subject.clone());
        }
        let mut event = builder
            .build()
            .map_err(|e| DispatchError::Internal(format!("building the envelope: {e}")))?;
        let content_type = request.content_type.clone();
        match (&content_type, request.body.is_empty()) {
            (_, true) => {
                event.set_datacontenttype(content_type.clone());
            }
            (Some(ct), false) => {
                let data = body_data(ct, &request.body)?;
                event.set_data(ct.clone(), data);
            }
            (None, false) => {
                event.set_data_unchecked(Data::Binary(request.body.to_vec()));
            }
        }
        apply_overrides(&mut event, &request.overrides)?;
        serde_json::to_value(&event)
            .map_err(|e| DispatchError::Internal(format!("encoding the envelope: {e}")))
    }
}

/// How a body travels in the envelope: JSON media types as the JSON value itself, `text/*`
/// as a string, anything else as `data_base64`.
fn body_data(content_type: &str, body: &Bytes) -> Result<Data, DispatchError> {
    let essence = media_type(content_type);
    if is_json(&essence) {
        let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
            DispatchError::InvalidJsonBody(format!(
                "the request body is declared {essence} but is not valid JSON: {e}"
            ))
        })?;
        return Ok(Data::Json(value));
    }
    if essence.starts_with("text/")
        && let Ok(text) = std::str::from_utf8(body)
    {
        return Ok(Data::String(text.to_string()));
    }
    Ok(Data::Binary(body.to_vec()))
}

/// The media type without parameters, lower-cased (`application/json; charset=utf-8` →
/// `application/json`).
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// `application/json` and every `+json` suffix type.
pub fn is_json(media_type: &str) -> bool {
    media_type == "application/json" || media_type.ends_with("+json")
}

/// Extensions clrk computes from the request and the revision: a caller cannot set them.
const CLRK_EXTENSIONS: [&str; 4] = ["clrkrevision", "httpmethod", "httpurl", "httpquery"];

/// `ce-<attr>` headers set `subject`, `time` and extensions of the caller's own. The
/// attributes that say what the event is and where it comes from stay clrk's: `specversion`,
/// `id` (always the execution id), `source` and `type` are ignored (a relayed binary-mode
/// CloudEvent carries them all), and clrk's computed extensions are refused.
fn apply_overrides(event: &mut Event, overrides: &[(String, String)]) -> Result<(), DispatchError> {
    for (attr, value) in overrides {
        match attr.as_str() {
            "specversion" | "id" | "source" | "type" => {}
            computed if CLRK_EXTENSIONS.contains(&computed) => {
                return Err(DispatchError::BadHeader(format!(
                    "header ce-{attr} cannot be set: clrk sets {attr} from the request and the revision"
                )));
            }
            "subject" => {
                event.set_subject(Some(value.clone()));
            }
            "time" => {
                let time = DateTime::parse_from_rfc3339(value).map_err(|e| {
                    DispatchError::BadHeader(format!(
                        "header ce-time: {value:?} is not an RFC 3339 time: {e}"
                    ))
                })?;
                event.set_time(Some(time.with_timezone(&Utc)));
            }
            "datacontenttype" | "dataschema" | "data" | "data_base64" => {
                return Err(DispatchError::BadHeader(format!(
                    "header ce-{attr} cannot be set: the body and its Content-Type define it"
                )));
            }
            name => {
                if !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                {
                    return Err(DispatchError::BadHeader(format!(
                        "header ce-{name}: CloudEvents attribute names use only a-z and 0-9"
                    )));
                }
                event.set_extension(name, value.clone());
            }
        }
    }
    Ok(())
}

/// Wraps an agent's stdout in a `dev.apoxy.clrk.taskagent.response` event.
pub fn response_event(trigger_id: &str, source: &str, stdout: &[u8]) -> serde_json::Value {
    let mut event = serde_json::json!({
        "specversion": "1.0",
        "id": format!("{trigger_id}.response"),
        "source": source,
        "type": RESPONSE_TYPE,
        "time": format_time(Utc::now()),
    });
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(stdout) {
        event["datacontenttype"] = "application/json".into();
        event["data"] = value;
    } else if let Ok(text) = std::str::from_utf8(stdout) {
        event["datacontenttype"] = "text/plain".into();
        event["data"] = text.into();
    } else {
        event["datacontenttype"] = "application/octet-stream".into();
        event["data_base64"] = base64::engine::general_purpose::STANDARD
            .encode(stdout)
            .into();
    }
    event
}

/// RFC 3339 UTC with a fraction and a `Z`, as in the envelope.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trigger(ct: Option<&str>, body: &'static [u8]) -> Trigger {
        Trigger {
            execution_id: "a1b2".into(),
            namespace: "default".into(),
            name: "word-count".into(),
            revision: "word-count-00001".into(),
            subject: Some("http".into()),
            request: RequestData {
                method: "POST".into(),
                path: "/hook".into(),
                query: "x=1".into(),
                content_type: ct.map(String::from),
                body: Bytes::from_static(body),
                overrides: vec![],
            },
            time: Utc::now(),
        }
    }

    #[test]
    fn json_body_is_the_json_value() {
        let env = trigger(Some("application/json"), br#"{"text":"hello world"}"#)
            .envelope()
            .unwrap();
        assert_eq!(env["specversion"], "1.0");
        assert_eq!(env["id"], "a1b2");
        assert_eq!(env["type"], INVOKE_TYPE);
        assert_eq!(env["subject"], "http");
        assert_eq!(env["datacontenttype"], "application/json");
        assert_eq!(env["data"]["text"], "hello world");
        assert_eq!(env["clrkrevision"], "word-count-00001");
        assert_eq!(env["httpmethod"], "POST");
        assert_eq!(env["httpurl"], "/hook");
        assert_eq!(env["httpquery"], "x=1");
        assert!(env.get("data_base64").is_none());
        let time = env["time"].as_str().unwrap();
        assert!(time.ends_with('Z') && time.contains('.'), "{time}");
    }

    #[test]
    fn plus_json_and_parameters_count_as_json() {
        let env = trigger(
            Some("application/cloudevents+json; charset=utf-8"),
            b"[1,2]",
        )
        .envelope()
        .unwrap();
        assert_eq!(env["data"], serde_json::json!([1, 2]));
    }

    #[test]
    fn text_is_a_string_and_binary_is_base64() {
        let env = trigger(Some("text/plain"), b"hi there").envelope().unwrap();
        assert_eq!(env["data"], "hi there");
        let env = trigger(Some("application/octet-stream"), b"\x00\x01")
            .envelope()
            .unwrap();
        assert_eq!(env["data_base64"], "AAE=");
        assert!(env.get("data").is_none());
        let env = trigger(None, b"raw").envelope().unwrap();
        assert_eq!(env["data_base64"], "cmF3");
        assert!(env.get("datacontenttype").is_none());
    }

    #[test]
    fn empty_body_has_no_data_and_no_subject_without_trigger() {
        let mut t = trigger(None, b"");
        t.subject = None;
        let env = t.envelope().unwrap();
        assert!(env.get("data").is_none());
        assert!(env.get("data_base64").is_none());
        assert!(env.get("subject").is_none());
        assert!(env.get("datacontenttype").is_none());
    }

    #[test]
    fn invalid_json_is_an_error_that_says_so() {
        let err = trigger(Some("application/json"), b"{nope")
            .envelope()
            .unwrap_err();
        assert!(matches!(err, DispatchError::InvalidJsonBody(_)));
        assert!(err.to_string().contains("not valid JSON"), "{err}");
    }

    #[test]
    fn ce_headers_set_the_callers_attributes_but_not_clrks() {
        let mut t = trigger(None, b"");
        t.request.overrides = vec![
            ("type".into(), "com.example.push".into()),
            ("source".into(), "https://evil.example".into()),
            ("id".into(), "other".into()),
            ("subject".into(), "push".into()),
            ("tenant".into(), "acme".into()),
        ];
        let env = t.envelope().unwrap();
        assert_eq!(env["type"], INVOKE_TYPE);
        assert_eq!(env["source"], "clrk://default/word-count");
        assert_eq!(env["id"], "a1b2");
        assert_eq!(env["subject"], "push");
        assert_eq!(env["tenant"], "acme");
        for computed in CLRK_EXTENSIONS {
            let mut t = trigger(None, b"");
            t.request.overrides = vec![(computed.into(), "x".into())];
            let err = t.envelope().unwrap_err();
            assert_eq!(err.status(), http::StatusCode::BAD_REQUEST, "{computed}");
            assert!(err.to_string().contains(computed), "{err}");
        }
    }

    #[test]
    fn response_event_wraps_json_text_and_bytes() {
        let e = response_event("x", "clrk://default/a", br#"{"ok":true}"#);
        assert_eq!(e["id"], "x.response");
        assert_eq!(e["type"], RESPONSE_TYPE);
        assert_eq!(e["data"]["ok"], true);
        let e = response_event("x", "clrk://default/a", b"plain");
        assert_eq!(e["data"], "plain");
        let e = response_event("x", "clrk://default/a", b"\xff");
        assert_eq!(e["data_base64"], "/w==");
    }
}
