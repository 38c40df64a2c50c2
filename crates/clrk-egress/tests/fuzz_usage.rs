//! Fuzzing the token usage meter with property tests. The proxy feeds it a provider's response
//! as the bytes arrive, so however the body is cut into chunks (empty ones included) the
//! usage must be the same as for the whole body; for arbitrary bytes it must not panic; and for
//! OpenAI and Anthropic responses and streams generated with known counts, with any line
//! endings, comments, extra events and text that mentions "usage", it must find exactly those
//! counts.
//!
//! The number of cases per property is small enough for CI; `PROPTEST_CASES` raises it for a
//! longer run (docs/security.md).

use clrk_egress::{Provider, TokenUsage, UsageMeter};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::json;

/// `cases` per property, unless `PROPTEST_CASES` asks for another number.
fn config(cases: u32) -> Config {
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}

fn provider() -> impl Strategy<Value = Provider> {
    prop_oneof![Just(Provider::OpenAi), Just(Provider::Anthropic)]
}

fn content_type() -> impl Strategy<Value = Option<&'static str>> {
    prop::sample::select(vec![
        None,
        Some("application/json"),
        Some("text/event-stream"),
        Some("Text/Event-Stream; charset=utf-8"),
        Some("text/plain"),
    ])
}

/// Cut points into a body of any length, each maybe followed by an empty chunk (a body frame
/// without data).
fn cuts() -> impl Strategy<Value = Vec<(prop::sample::Index, bool)>> {
    prop::collection::vec(
        (any::<prop::sample::Index>(), prop::bool::weighted(0.2)),
        0..16,
    )
}

fn meter_whole(provider: Provider, content_type: Option<&str>, body: &[u8]) -> Option<TokenUsage> {
    let mut meter = UsageMeter::new(provider, content_type);
    meter.feed(body);
    meter.finish()
}

fn meter_chunked(
    provider: Provider,
    content_type: Option<&str>,
    body: &[u8],
    cuts: &[(prop::sample::Index, bool)],
) -> Option<TokenUsage> {
    let mut at: Vec<(usize, bool)> = cuts
        .iter()
        .map(|(i, empty)| (i.index(body.len() + 1), *empty))
        .collect();
    at.sort_unstable();
    let mut meter = UsageMeter::new(provider, content_type);
    let mut start = 0;
    for (end, empty) in at {
        meter.feed(&body[start..end]);
        if empty {
            meter.feed(&[]);
        }
        start = end;
    }
    meter.feed(&body[start..]);
    meter.finish()
}

/// Bytes that are sometimes almost a stream or a body.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..16),
        prop::sample::select(vec![
            "data: ",
            "data:",
            "event: x",
            ": comment",
            "\n",
            "\r",
            "\r\n",
            " ",
            "\t",
            "{",
            "}",
            "\"usage\":",
            "{\"usage\":{\"input_tokens\":3,\"output_tokens\":4}}",
            "{\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":6},\"model\":\"m\"}",
            "{\"message\":{\"usage\":{\"input_tokens\":7}}}",
            "[DONE]",
            "null",
            "\u{1F600}",
            // An event whose JSON spans two data lines.
            "data: {\"usage\":\r\ndata: {\"input_tokens\":8}}\r",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

/// One way to end lines, as the SSE spec allows all three.
fn line_end() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["\n", "\r\n", "\r"])
}

/// A response with known counts, and what the meter must report for it.
#[derive(Debug, Clone)]
struct Generated {
    provider: Provider,
    content_type: &'static str,
    body: Vec<u8>,
    expected: TokenUsage,
}

/// Text content that may spell out `"usage"` without being usage.
fn content() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,24}",
        Just("the \"usage\" of words".to_owned()),
        Just("{\"usage\":{\"input_tokens\":999999}}".to_owned()),
    ]
}

/// An SSE stream of `events` (each a JSON payload, with an optional `event:` name), with
/// comments and blank lines between them.
fn sse(events: &[(Option<&str>, serde_json::Value)], end: &str, comments: bool) -> Vec<u8> {
    let mut out = String::new();
    for (name, data) in events {
        if comments {
            out += &format!(": keep-alive{end}");
        }
        if let Some(name) = name {
            out += &format!("event: {name}{end}");
        }
        out += &format!("data: {data}{end}{end}");
    }
    out.into_bytes()
}

fn openai_chat() -> impl Strategy<Value = Generated> {
    (
        any::<u32>(),
        any::<u32>(),
        prop::collection::vec(content(), 0..4),
        "[a-z0-9.-]{1,16}",
        line_end(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(prompt, completion, deltas, model, end, stream, comments)| {
            let usage = json!({"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": u64::from(prompt) + u64::from(completion)});
            let expected = TokenUsage {
                input_tokens: prompt.into(),
                output_tokens: completion.into(),
                model: Some(model.clone()),
            };
            if !stream {
                let body = json!({"id": "c", "object": "chat.completion", "model": model,
                    "choices": [{"message": {"content": deltas.concat()}}], "usage": usage});
                return Generated {
                    provider: Provider::OpenAi,
                    content_type: "application/json",
                    body: serde_json::to_vec_pretty(&body).unwrap(),
                    expected,
                };
            }
            let mut events: Vec<(Option<&str>, serde_json::Value)> = deltas
                .iter()
                .map(|d| (None, json!({"model": model, "choices": [{"delta": {"content": d}}], "usage": null})))
                .collect();
            events.push((None, json!({"model": model, "choices": [], "usage": usage})));
            let mut body = sse(&events, end, comments);
            body.extend_from_slice(format!("data: [DONE]{end}{end}").as_bytes());
            Generated {
                provider: Provider::OpenAi,
                content_type: "text/event-stream",
                body,
                expected,
            }
        })
}

fn openai_responses() -> impl Strategy<Value = Generated> {
    (
        any::<u32>(),
        any::<u32>(),
        content(),
        "[a-z0-9.-]{1,16}",
        line_end(),
    )
        .prop_map(|(input, output, text, model, end)| {
            let events = vec![
                (
                    Some("response.created"),
                    json!({"type": "response.created",
                    "response": {"model": model, "usage": null}}),
                ),
                (
                    Some("response.output_text.delta"),
                    json!({"type": "response.output_text.delta",
                    "delta": text}),
                ),
                (
                    Some("response.completed"),
                    json!({"type": "response.completed",
                    "response": {"model": model, "usage": {"input_tokens": input,
                    "output_tokens": output}}}),
                ),
            ];
            Generated {
                provider: Provider::OpenAi,
                content_type: "text/event-stream",
                body: sse(&events, end, false),
                expected: TokenUsage {
                    input_tokens: input.into(),
                    output_tokens: output.into(),
                    model: Some(model),
                },
            }
        })
}

fn anthropic() -> impl Strategy<Value = Generated> {
    (
        (any::<u32>(), any::<u32>(), any::<u32>()),
        (any::<u32>(), prop::collection::vec(any::<u32>(), 0..3)),
        prop::collection::vec(content(), 0..4),
        "[a-z0-9.-]{1,16}",
        line_end(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |((input, created, read), (first, mut later), texts, model, end, stream, comments)| {
                let input_total = u64::from(input) + u64::from(created) + u64::from(read);
                // Output counts are cumulative: the last one reported is the total.
                later.sort_unstable();
                let output = later.last().copied().unwrap_or(first);
                let expected = TokenUsage {
                    input_tokens: input_total,
                    output_tokens: output.into(),
                    model: Some(model.clone()),
                };
                let usage = json!({"input_tokens": input, "cache_creation_input_tokens": created,
                    "cache_read_input_tokens": read, "output_tokens": first});
                if !stream {
                    let mut usage = usage;
                    usage["output_tokens"] = output.into();
                    let body = json!({"type": "message", "model": model,
                        "content": [{"type": "text", "text": texts.concat()}], "usage": usage});
                    return Generated {
                        provider: Provider::Anthropic,
                        content_type: "application/json",
                        body: serde_json::to_vec(&body).unwrap(),
                        expected,
                    };
                }
                let mut events = vec![(
                    Some("message_start"),
                    json!({"type": "message_start",
                    "message": {"model": model, "content": [], "usage": usage}}),
                )];
                events.push((Some("ping"), json!({"type": "ping"})));
                for text in &texts {
                    events.push((
                        Some("content_block_delta"),
                        json!({"type": "content_block_delta",
                        "delta": {"type": "text_delta", "text": text}}),
                    ));
                }
                for output in &later {
                    events.push((
                        Some("message_delta"),
                        json!({"type": "message_delta",
                        "usage": {"output_tokens": output}}),
                    ));
                }
                events.push((Some("message_stop"), json!({"type": "message_stop"})));
                Generated {
                    provider: Provider::Anthropic,
                    content_type: "text/event-stream",
                    body: sse(&events, end, comments),
                    expected,
                }
            },
        )
}

proptest! {
    #![proptest_config(config(30000))]

    /// Arbitrary bytes: no panic, and the chunking makes no difference.
    #[test]
    fn fuzz_usage_chunked_equals_whole_for_any_bytes(
        provider in provider(),
        content_type in content_type(),
        body in body(),
        cuts in cuts(),
    ) {
        let whole = meter_whole(provider, content_type, &body);
        let chunked = meter_chunked(provider, content_type, &body, &cuts);
        prop_assert_eq!(chunked, whole, "body {:?}", String::from_utf8_lossy(&body));
    }

    /// Generated provider responses: exactly the counts put in, however chunked, with or
    /// without the Content-Type.
    #[test]
    fn fuzz_usage_of_generated_responses_is_exact(
        generated in prop_oneof![openai_chat(), openai_responses(), anthropic()],
        cuts in cuts(),
        declared in any::<bool>(),
    ) {
        let Generated { provider, content_type, body, expected } = generated;
        let content_type = declared.then_some(content_type);
        let text = String::from_utf8_lossy(&body);
        prop_assert_eq!(
            meter_whole(provider, content_type, &body),
            Some(expected.clone()),
            "whole body:\n{}", text
        );
        prop_assert_eq!(
            meter_chunked(provider, content_type, &body, &cuts),
            Some(expected),
            "chunked body:\n{}", text
        );
    }
}

/// Found by the fuzzer: an empty chunk between a `\r` and its `\n` ended the line twice,
/// which split an event whose JSON spans two data lines.
#[test]
fn an_empty_chunk_between_cr_and_lf_is_one_line_end() {
    let body = b"data: {\"usage\":\r\ndata: {\"input_tokens\":3}}\n\n";
    let cr = body.iter().position(|&b| b == b'\r').unwrap() + 1;
    let mut meter = UsageMeter::new(Provider::Anthropic, Some("text/event-stream"));
    meter.feed(&body[..cr]);
    meter.feed(b"");
    meter.feed(&body[cr..]);
    let usage = meter.finish();
    assert_eq!(usage.as_ref().map(|u| u.input_tokens), Some(3));
    assert_eq!(
        usage,
        meter_whole(Provider::Anthropic, Some("text/event-stream"), body)
    );
}

/// Found by the fuzzer: without a content type, blanks arriving in a chunk of their own were
/// dropped, but kept when they came with the first line, so the same stream metered
/// differently.
#[test]
fn leading_blanks_are_skipped_however_they_arrive() {
    let body = b" data: {\"usage\":{\"input_tokens\":3}}\n\n";
    let mut meter = UsageMeter::new(Provider::Anthropic, None);
    meter.feed(&body[..1]);
    meter.feed(&body[1..]);
    assert_eq!(meter.finish(), meter_whole(Provider::Anthropic, None, body));
}
