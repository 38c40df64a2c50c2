//! Token usage metering of LLM provider responses.
//!
//! The proxy feeds each response body through a [`UsageMeter`] as it streams to the agent, so
//! budgets and telemetry learn how many tokens a call used without delaying or altering it.
//! Bodies are assumed to be identity-encoded: the proxy asks upstream for that.

use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer};

/// The most a JSON response body is buffered for metering; larger bodies go unmetered rather
/// than holding unbounded memory per connection.
const MAX_JSON_BODY: usize = 8 * 1024 * 1024;

/// The most one server-sent event (its partial line plus its data) is buffered; a longer event
/// is skipped.
const MAX_SSE_EVENT: usize = 8 * 1024 * 1024;

/// An LLM API whose responses the gateway meters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    /// The OpenAI API: Chat Completions and Responses.
    OpenAi,
    /// The Anthropic Messages API.
    Anthropic,
    /// Azure OpenAI: OpenAI's dialect, usage reported the same way.
    AzureOpenAi,
}

impl Provider {
    /// The provider's `gen_ai.system` name in OpenTelemetry's semantic conventions.
    ///
    /// ```
    /// assert_eq!(clrk_egress::Provider::Anthropic.as_str(), "anthropic");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Anthropic => "anthropic",
            Provider::AzureOpenAi => "az.ai.openai",
        }
    }
}

/// Tokens one call consumed, as the provider reported them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenUsage {
    /// Prompt tokens, cached ones included.
    pub input_tokens: u64,
    /// Generated tokens.
    pub output_tokens: u64,
    /// The model that answered, when the response named it.
    pub model: Option<String>,
}

impl TokenUsage {
    /// Input and output tokens together.
    ///
    /// ```
    /// let usage = clrk_egress::TokenUsage { input_tokens: 10, output_tokens: 5, model: None };
    /// assert_eq!(usage.total(), 15);
    /// ```
    pub fn total(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }
}

/// The `model` of a request body (JSON), if any.
///
/// ```
/// use clrk_egress::request_model;
/// assert_eq!(request_model(br#"{"model":"gpt-4o","messages":[]}"#).as_deref(), Some("gpt-4o"));
/// assert_eq!(request_model(b"not json"), None);
/// ```
pub fn request_model(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Request {
        #[serde(default, deserialize_with = "lenient")]
        model: Option<String>,
    }
    serde_json::from_slice::<Request>(body).ok()?.model
}

/// Reads the token usage out of a response body fed to it chunk by chunk.
///
/// Chunks may split the body anywhere, even inside a line or a UTF-8 character. A JSON body is
/// buffered (up to 8 MiB) and read at the end; a `text/event-stream` body is read event by event,
/// keeping only the event in progress.
///
/// ```
/// use clrk_egress::{Provider, UsageMeter};
/// let mut meter = UsageMeter::new(Provider::Anthropic, Some("application/json"));
/// meter.feed(br#"{"model":"claude-sonnet-4-5","usage":{"input_tokens":12,"#);
/// meter.feed(br#""output_tokens":3}}"#);
/// let usage = meter.finish().unwrap();
/// assert_eq!((usage.input_tokens, usage.output_tokens), (12, 3));
/// ```
#[derive(Debug)]
pub struct UsageMeter {
    provider: Provider,
    body: Body,
    seen: Seen,
}

#[derive(Debug)]
enum Body {
    /// No content type was given: decided by the first non-blank byte.
    Undecided,
    Json(JsonBody),
    Sse(SseBody),
}

#[derive(Debug, Default)]
struct JsonBody {
    buf: Vec<u8>,
    too_large: bool,
}

#[derive(Debug, Default)]
struct SseBody {
    /// The line being received.
    line: Vec<u8>,
    /// The data lines of the event being received, joined by `\n`.
    data: Vec<u8>,
    has_data: bool,
    /// The last chunk ended in `\r`: a `\n` starting the next one belongs to the same line end.
    after_cr: bool,
    /// The current line or event outgrew its bound and is being skipped.
    skipping_line: bool,
    skipping_event: bool,
}

/// The usage gathered so far.
#[derive(Debug, Default)]
struct Seen {
    input: Option<u64>,
    output: Option<u64>,
    model: Option<String>,
}

impl UsageMeter {
    /// A meter for a response of `provider` with this `Content-Type`.
    ///
    /// `text/event-stream` means server-sent events; any other type means JSON. Without a
    /// content type the body's first byte decides.
    ///
    /// ```
    /// use clrk_egress::{Provider, UsageMeter};
    /// let meter = UsageMeter::new(Provider::OpenAi, Some("text/event-stream; charset=utf-8"));
    /// assert_eq!(meter.finish(), None);
    /// ```
    pub fn new(provider: Provider, content_type: Option<&str>) -> Self {
        let body = match content_type {
            None => Body::Undecided,
            Some(ct) if is_event_stream(ct) => Body::Sse(SseBody::default()),
            Some(_) => Body::Json(JsonBody::default()),
        };
        UsageMeter {
            provider,
            body,
            seen: Seen::default(),
        }
    }

    /// Feeds the next piece of the response body.
    ///
    /// ```
    /// use clrk_egress::{Provider, UsageMeter};
    /// let mut meter = UsageMeter::new(Provider::OpenAi, Some("application/json"));
    /// meter.feed(br#"{"usage":{"prompt_tokens":1,"completion_tokens":2}}"#);
    /// assert_eq!(meter.finish().unwrap().total(), 3);
    /// ```
    pub fn feed(&mut self, mut chunk: &[u8]) {
        if let Body::Undecided = self.body {
            // Blanks before the first character are skipped, whether or not they came in a
            // chunk of their own.
            let Some(start) = chunk.iter().position(|b| !b.is_ascii_whitespace()) else {
                return;
            };
            chunk = &chunk[start..];
            self.body = match chunk[0] {
                b'{' | b'[' => Body::Json(JsonBody::default()),
                _ => Body::Sse(SseBody::default()),
            };
        }
        match &mut self.body {
            Body::Undecided => {}
            Body::Json(json) => json.feed(chunk),
            Body::Sse(sse) => sse.feed(chunk, &mut |data| {
                self.seen.observe_event(self.provider, data);
            }),
        }
    }

    /// The usage the body reported; `None` when it reported none or was too large to read.
    ///
    /// ```
    /// use clrk_egress::{Provider, UsageMeter};
    /// let mut meter = UsageMeter::new(Provider::OpenAi, Some("application/json"));
    /// meter.feed(br#"{"error":{"message":"rate limited"}}"#);
    /// assert_eq!(meter.finish(), None);
    /// ```
    pub fn finish(mut self) -> Option<TokenUsage> {
        match &mut self.body {
            Body::Undecided => {}
            Body::Json(json) => {
                if json.too_large {
                    return None;
                }
                self.seen.observe_json(self.provider, &json.buf);
            }
            Body::Sse(sse) => sse.finish(&mut |data| {
                self.seen.observe_event(self.provider, data);
            }),
        }
        self.seen.into_usage()
    }
}

fn is_event_stream(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("text/event-stream")
}

impl JsonBody {
    fn feed(&mut self, chunk: &[u8]) {
        if self.too_large {
            return;
        }
        if self.buf.len() + chunk.len() > MAX_JSON_BODY {
            tracing::debug!(
                limit = MAX_JSON_BODY,
                "response body too large to meter; usage not recorded"
            );
            self.too_large = true;
            self.buf = Vec::new();
            return;
        }
        self.buf.extend_from_slice(chunk);
    }
}

impl SseBody {
    /// Splits `chunk` into lines (LF, CRLF or CR, as the SSE spec allows) and hands the data of
    /// each complete event to `on_event`.
    fn feed(&mut self, mut chunk: &[u8], on_event: &mut dyn FnMut(&[u8])) {
        // An empty chunk must not end a `\r` line end before the `\n` that may follow it.
        if chunk.is_empty() {
            return;
        }
        if self.after_cr && chunk.first() == Some(&b'\n') {
            chunk = &chunk[1..];
        }
        self.after_cr = false;
        while let Some(end) = chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.push_to_line(&chunk[..end]);
            self.end_line(on_event);
            if chunk[end] == b'\r' {
                match chunk.get(end + 1) {
                    Some(b'\n') => chunk = &chunk[end + 2..],
                    Some(_) => chunk = &chunk[end + 1..],
                    None => {
                        self.after_cr = true;
                        chunk = &[];
                    }
                }
            } else {
                chunk = &chunk[end + 1..];
            }
        }
        self.push_to_line(chunk);
    }

    /// A stream cut without its final blank line still counts: the usage is usually in the
    /// last event.
    fn finish(&mut self, on_event: &mut dyn FnMut(&[u8])) {
        if !self.line.is_empty() || self.skipping_line {
            self.end_line(on_event);
        }
        self.dispatch(on_event);
    }

    fn push_to_line(&mut self, bytes: &[u8]) {
        if self.skipping_line {
            return;
        }
        if self.line.len() + self.data.len() + bytes.len() > MAX_SSE_EVENT {
            self.skipping_line = true;
            self.skipping_event = true;
            self.line = Vec::new();
            self.data = Vec::new();
            return;
        }
        self.line.extend_from_slice(bytes);
    }

    fn end_line(&mut self, on_event: &mut dyn FnMut(&[u8])) {
        if self.skipping_line {
            self.skipping_line = false;
            return;
        }
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            self.dispatch(on_event);
        } else if !self.skipping_event {
            self.field(&line);
        }
        // Reuse the allocation for the next line.
        self.line = line;
        self.line.clear();
    }

    fn field(&mut self, line: &[u8]) {
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        // Only `data` matters: the JSON payload carries its own `type`. Comments (empty name)
        // and `event`, `id`, `retry` are ignored.
        if name == b"data" {
            if self.has_data {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(value);
            self.has_data = true;
        }
    }

    fn dispatch(&mut self, on_event: &mut dyn FnMut(&[u8])) {
        if self.has_data && !self.skipping_event {
            on_event(&self.data);
        }
        self.data.clear();
        self.has_data = false;
        self.skipping_event = false;
    }
}

/// The parts of a response body or stream event that can carry usage. OpenAI puts `usage` at
/// the top level (and in a Responses stream under `response`); Anthropic puts it at the top level
/// and, in `message_start`, under `message`.
#[derive(Deserialize)]
struct Envelope {
    #[serde(default, deserialize_with = "lenient")]
    model: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    usage: Option<Usage>,
    #[serde(default, deserialize_with = "lenient")]
    message: Option<Inner>,
    #[serde(default, deserialize_with = "lenient")]
    response: Option<Inner>,
}

#[derive(Deserialize)]
struct Inner {
    #[serde(default, deserialize_with = "lenient")]
    model: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default, deserialize_with = "lenient")]
    prompt_tokens: Option<u64>,
    #[serde(default, deserialize_with = "lenient")]
    completion_tokens: Option<u64>,
    #[serde(default, deserialize_with = "lenient")]
    input_tokens: Option<u64>,
    #[serde(default, deserialize_with = "lenient")]
    output_tokens: Option<u64>,
    #[serde(default, deserialize_with = "lenient")]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default, deserialize_with = "lenient")]
    cache_read_input_tokens: Option<u64>,
}

/// A field of an unexpected shape (`"usage": null`, a string where an object was expected)
/// reads as absent instead of failing the whole event.
fn lenient<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    let value = serde_json::Value::deserialize(deserializer)?;
    Ok(T::deserialize(value).ok())
}

impl Usage {
    fn input(&self, provider: Provider) -> Option<u64> {
        match provider {
            // Chat Completions says `prompt_tokens`, Responses `input_tokens`; both already
            // include cached tokens.
            Provider::OpenAi | Provider::AzureOpenAi => self.prompt_tokens.or(self.input_tokens),
            // Anthropic reports cache writes and reads apart from `input_tokens`.
            Provider::Anthropic => {
                let parts = [
                    self.input_tokens,
                    self.cache_creation_input_tokens,
                    self.cache_read_input_tokens,
                ];
                parts.into_iter().flatten().reduce(u64::saturating_add)
            }
        }
    }

    fn output(&self, provider: Provider) -> Option<u64> {
        match provider {
            Provider::OpenAi | Provider::AzureOpenAi => {
                self.completion_tokens.or(self.output_tokens)
            }
            Provider::Anthropic => self.output_tokens,
        }
    }
}

impl Seen {
    fn observe_json(&mut self, provider: Provider, body: &[u8]) {
        match serde_json::from_slice::<Envelope>(body) {
            Ok(envelope) => self.observe(provider, envelope),
            Err(error) => tracing::debug!(%error, "response body is not JSON; usage not recorded"),
        }
    }

    fn observe_event(&mut self, provider: Provider, data: &[u8]) {
        // Most events are content deltas; skip parsing those that cannot carry usage. Events
        // with usage also name the model, so none is missed.
        if !contains(data, b"\"usage\"") {
            return;
        }
        if let Ok(envelope) = serde_json::from_slice::<Envelope>(data) {
            self.observe(provider, envelope);
        }
    }

    /// Anthropic repeats usage across a stream: `message_start` has the input and a first
    /// output count, each `message_delta` the cumulative output (and, in newer versions, the
    /// input again). So the largest input and the latest output win; OpenAI reports usage once,
    /// which the same rule handles.
    fn observe(&mut self, provider: Provider, envelope: Envelope) {
        let inner = [envelope.message, envelope.response].into_iter().flatten();
        let candidates = std::iter::once((envelope.model, envelope.usage))
            .chain(inner.map(|inner| (inner.model, inner.usage)));
        for (model, usage) in candidates {
            if let Some(model) = model.filter(|m| !m.is_empty()) {
                self.model = Some(model);
            }
            let Some(usage) = usage else { continue };
            if let Some(input) = usage.input(provider) {
                self.input = Some(self.input.map_or(input, |seen| seen.max(input)));
            }
            if let Some(output) = usage.output(provider) {
                self.output = Some(output);
            }
        }
    }

    fn into_usage(self) -> Option<TokenUsage> {
        if self.input.is_none() && self.output.is_none() {
            return None;
        }
        Some(TokenUsage {
            input_tokens: self.input.unwrap_or(0),
            output_tokens: self.output.unwrap_or(0),
            model: self.model,
        })
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meter_whole(
        provider: Provider,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Option<TokenUsage> {
        let mut meter = UsageMeter::new(provider, content_type);
        meter.feed(body);
        meter.finish()
    }

    fn meter_bytewise(
        provider: Provider,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Option<TokenUsage> {
        let mut meter = UsageMeter::new(provider, content_type);
        for byte in body.chunks(1) {
            meter.feed(byte);
        }
        meter.finish()
    }

    /// Meters `body` whole, byte by byte and in uneven chunks, and checks all agree.
    fn meter(provider: Provider, content_type: Option<&str>, body: &[u8]) -> Option<TokenUsage> {
        let whole = meter_whole(provider, content_type, body);
        assert_eq!(
            meter_bytewise(provider, content_type, body),
            whole,
            "1-byte chunks"
        );
        let mut meter = UsageMeter::new(provider, content_type);
        for chunk in body.chunks(7) {
            meter.feed(chunk);
        }
        assert_eq!(meter.finish(), whole, "7-byte chunks");
        whole
    }

    fn usage(input: u64, output: u64, model: &str) -> Option<TokenUsage> {
        Some(TokenUsage {
            input_tokens: input,
            output_tokens: output,
            model: Some(model.to_string()),
        })
    }

    const OPENAI_CHAT_JSON: &str = r#"{
  "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
  "object": "chat.completion",
  "created": 1741570283,
  "model": "gpt-4o-2024-08-06",
  "choices": [
    {
      "index": 0,
      "message": {
        "role": "assistant",
        "content": "The image shows a wooden boardwalk path — «très» beautiful 🌿.",
        "refusal": null,
        "annotations": []
      },
      "logprobs": null,
      "finish_reason": "stop"
    }
  ],
  "usage": {
    "prompt_tokens": 1117,
    "completion_tokens": 46,
    "total_tokens": 1163,
    "prompt_tokens_details": { "cached_tokens": 1024, "audio_tokens": 0 },
    "completion_tokens_details": {
      "reasoning_tokens": 0,
      "audio_tokens": 0,
      "accepted_prediction_tokens": 0,
      "rejected_prediction_tokens": 0
    }
  },
  "service_tier": "default",
  "system_fingerprint": "fp_fc9f1d7035"
}"#;

    const OPENAI_RESPONSES_JSON: &str = r#"{
  "id": "resp_67ccd3a9da748190baa7f1570fe91ac604becb25c45c1d41",
  "object": "response",
  "created_at": 1741476777,
  "status": "completed",
  "model": "gpt-4o-2024-08-06",
  "output": [
    {
      "type": "message",
      "id": "msg_67ccd3acc8d48190a77525dc6de64b4104becb25c45c1d41",
      "status": "completed",
      "role": "assistant",
      "content": [{ "type": "output_text", "text": "Un unicornio… ✨", "annotations": [] }]
    }
  ],
  "usage": {
    "input_tokens": 328,
    "input_tokens_details": { "cached_tokens": 0 },
    "output_tokens": 52,
    "output_tokens_details": { "reasoning_tokens": 0 },
    "total_tokens": 380
  }
}"#;

    const OPENAI_CHAT_SSE: &str = concat!(
        "data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_44709d6fcb\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n",
        "\n",
        "data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_44709d6fcb\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Grüße 👋\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n",
        "\n",
        "data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_44709d6fcb\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":null}\n",
        "\n",
        "data: {\"id\":\"chatcmpl-123\",\"object\":\"chat.completion.chunk\",\"created\":1694268190,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_44709d6fcb\",\"choices\":[],\"usage\":{\"prompt_tokens\":19,\"completion_tokens\":10,\"total_tokens\":29,\"prompt_tokens_details\":{\"cached_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0}}}\n",
        "\n",
        "data: [DONE]\n",
        "\n",
    );

    const OPENAI_RESPONSES_SSE: &str = concat!(
        "event: response.created\n",
        "data: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"in_progress\",\"model\":\"gpt-4.1-2025-04-14\",\"output\":[],\"usage\":null}}\n",
        "\n",
        "event: response.output_text.delta\n",
        "data: {\"type\":\"response.output_text.delta\",\"sequence_number\":4,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hi\"}\n",
        "\n",
        "event: response.completed\n",
        "data: {\"type\":\"response.completed\",\"sequence_number\":9,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"completed\",\"model\":\"gpt-4.1-2025-04-14\",\"output\":[{\"type\":\"message\",\"content\":[{\"type\":\"output_text\",\"text\":\"Hi\"}]}],\"usage\":{\"input_tokens\":37,\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens\":11,\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":48}}}\n",
        "\n",
    );

    const ANTHROPIC_JSON: &str = r#"{
  "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
  "type": "message",
  "role": "assistant",
  "model": "claude-sonnet-4-5-20250929",
  "content": [{ "type": "text", "text": "Hi! My name is Claude — ça va? 日本語も話せます。" }],
  "stop_reason": "end_turn",
  "stop_sequence": null,
  "usage": {
    "input_tokens": 2095,
    "cache_creation_input_tokens": 100,
    "cache_read_input_tokens": 2000,
    "output_tokens": 503,
    "service_tier": "standard"
  }
}"#;

    const ANTHROPIC_SSE: &str = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-5-20250929\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":10,\"output_tokens\":1}}}\n",
        "\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n",
        "\n",
        "event: ping\n",
        "data: {\"type\": \"ping\"}\n",
        "\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello — naïve 🙂\"}}\n",
        "\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"! The \\\"usage\\\" of words\"}}\n",
        "\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":0}\n",
        "\n",
        "event: message_delta\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n",
        "\n",
        "event: message_stop\n",
        "data: {\"type\":\"message_stop\"}\n",
        "\n",
    );

    #[test]
    fn openai_chat_json() {
        let got = meter(
            Provider::OpenAi,
            Some("application/json"),
            OPENAI_CHAT_JSON.as_bytes(),
        );
        assert_eq!(got, usage(1117, 46, "gpt-4o-2024-08-06"));
        assert_eq!(got.unwrap().total(), 1163);
    }

    #[test]
    fn openai_responses_json() {
        let got = meter(
            Provider::OpenAi,
            Some("application/json"),
            OPENAI_RESPONSES_JSON.as_bytes(),
        );
        assert_eq!(got, usage(328, 52, "gpt-4o-2024-08-06"));
    }

    #[test]
    fn openai_chat_sse() {
        let got = meter(
            Provider::OpenAi,
            Some("text/event-stream"),
            OPENAI_CHAT_SSE.as_bytes(),
        );
        assert_eq!(got, usage(19, 10, "gpt-4o-mini-2024-07-18"));
    }

    #[test]
    fn openai_responses_sse() {
        let got = meter(
            Provider::OpenAi,
            Some("text/event-stream; charset=utf-8"),
            OPENAI_RESPONSES_SSE.as_bytes(),
        );
        assert_eq!(got, usage(37, 11, "gpt-4.1-2025-04-14"));
    }

    #[test]
    fn anthropic_json_counts_cache_tokens_as_input() {
        let got = meter(
            Provider::Anthropic,
            Some("application/json"),
            ANTHROPIC_JSON.as_bytes(),
        );
        assert_eq!(
            got,
            usage(2095 + 100 + 2000, 503, "claude-sonnet-4-5-20250929")
        );
    }

    #[test]
    fn anthropic_sse_takes_last_output() {
        let got = meter(
            Provider::Anthropic,
            Some("text/event-stream"),
            ANTHROPIC_SSE.as_bytes(),
        );
        assert_eq!(got, usage(35, 15, "claude-sonnet-4-5-20250929"));
    }

    #[test]
    fn anthropic_sse_input_in_message_delta_takes_max() {
        let body = concat!(
            "event: message_start\n",
            "data: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-opus-4-1\",\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n",
            "event: message_delta\n",
            "data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":40}}\n\n",
            "event: message_delta\n",
            "data: {\"type\":\"message_delta\",\"usage\":{\"input_tokens\":5,\"cache_read_input_tokens\":300,\"output_tokens\":80}}\n\n",
        );
        let got = meter(
            Provider::Anthropic,
            Some("text/event-stream"),
            body.as_bytes(),
        );
        assert_eq!(got, usage(305, 80, "claude-opus-4-1"));
    }

    #[test]
    fn sse_with_crlf_and_cr_line_endings() {
        let crlf = ANTHROPIC_SSE.replace('\n', "\r\n");
        let got = meter(
            Provider::Anthropic,
            Some("text/event-stream"),
            crlf.as_bytes(),
        );
        assert_eq!(got, usage(35, 15, "claude-sonnet-4-5-20250929"));

        let cr = OPENAI_CHAT_SSE.replace('\n', "\r");
        let got = meter(Provider::OpenAi, Some("text/event-stream"), cr.as_bytes());
        assert_eq!(got, usage(19, 10, "gpt-4o-mini-2024-07-18"));
    }

    #[test]
    fn sse_data_split_over_lines_and_unterminated_last_event() {
        let body = "data: {\"model\":\"gpt-4o\",\n: a comment\ndata: \"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}";
        let got = meter(Provider::OpenAi, Some("text/event-stream"), body.as_bytes());
        assert_eq!(got, usage(3, 4, "gpt-4o"));
    }

    #[test]
    fn missing_content_type_is_sniffed() {
        let got = meter(Provider::OpenAi, None, OPENAI_CHAT_SSE.as_bytes());
        assert_eq!(got, usage(19, 10, "gpt-4o-mini-2024-07-18"));
        let got = meter(
            Provider::Anthropic,
            None,
            format!("\n {ANTHROPIC_JSON}").as_bytes(),
        );
        assert_eq!(got, usage(4195, 503, "claude-sonnet-4-5-20250929"));
    }

    #[test]
    fn no_usage_is_none() {
        let error =
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert_eq!(
            meter(
                Provider::Anthropic,
                Some("application/json"),
                error.as_bytes()
            ),
            None
        );
        let chat_without_usage = OPENAI_CHAT_SSE
            .lines()
            .filter(|line| !line.contains("\"usage\":{"))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(
            meter(
                Provider::OpenAi,
                Some("text/event-stream"),
                chat_without_usage.as_bytes()
            ),
            None
        );
        assert_eq!(
            meter(
                Provider::OpenAi,
                Some("text/html"),
                b"<html>502 Bad Gateway</html>"
            ),
            None
        );
        assert_eq!(meter(Provider::OpenAi, Some("application/json"), b""), None);
        assert_eq!(meter(Provider::OpenAi, None, b""), None);
        // A truncated JSON body cannot be read.
        let cut = &OPENAI_CHAT_JSON.as_bytes()[..OPENAI_CHAT_JSON.len() - 5];
        assert_eq!(meter(Provider::OpenAi, Some("application/json"), cut), None);
    }

    #[test]
    fn oversized_json_is_none() {
        let padding = "x".repeat(MAX_JSON_BODY);
        let body = format!(
            r#"{{"model":"gpt-4o","padding":"{padding}","usage":{{"prompt_tokens":1,"completion_tokens":2}}}}"#
        );
        assert_eq!(
            meter_whole(Provider::OpenAi, Some("application/json"), body.as_bytes()),
            None
        );
        let mut meter = UsageMeter::new(Provider::OpenAi, Some("application/json"));
        for chunk in body.as_bytes().chunks(64 * 1024) {
            meter.feed(chunk);
        }
        assert_eq!(meter.finish(), None);
    }

    #[test]
    fn oversized_sse_event_is_skipped_but_later_events_count() {
        let padding = "x".repeat(MAX_SSE_EVENT);
        let body = format!(
            "data: {{\"padding\":\"{padding}\",\"usage\":{{\"prompt_tokens\":100,\"completion_tokens\":100}}}}\n\n\
             data: {{\"model\":\"gpt-4o\",\"usage\":{{\"prompt_tokens\":1,\"completion_tokens\":2}}}}\n\n"
        );
        let mut meter = UsageMeter::new(Provider::OpenAi, Some("text/event-stream"));
        for chunk in body.as_bytes().chunks(64 * 1024) {
            meter.feed(chunk);
        }
        assert_eq!(meter.finish(), usage(1, 2, "gpt-4o"));
    }

    #[test]
    fn request_model_reads_the_model() {
        let body = br#"{"model":"claude-sonnet-4-5","max_tokens":1024,"messages":[{"role":"user","content":"Hello"}]}"#;
        assert_eq!(request_model(body).as_deref(), Some("claude-sonnet-4-5"));
        assert_eq!(request_model(br#"{"messages":[]}"#), None);
        assert_eq!(request_model(br#"{"model":42}"#), None);
        assert_eq!(request_model(b"model=gpt-4o"), None);
        assert_eq!(request_model(b""), None);
    }

    #[test]
    fn provider_names() {
        assert_eq!(Provider::OpenAi.as_str(), "openai");
        assert_eq!(Provider::Anthropic.as_str(), "anthropic");
    }
}
