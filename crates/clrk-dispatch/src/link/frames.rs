//! An execution's events on the cluster link: the body of the worker's answer is a sequence of
//! length-delimited frames (4-byte big-endian length, then the frame), each a one-byte tag and
//! its payload:
//!
//! | tag | event | payload |
//! |---|---|---|
//! | 1 | stdout chunk | the bytes |
//! | 2 | Metadata-mode answer | 4-byte length of the content type, the content type, the body |
//! | 3 | the end | the [`Outcome`] as JSON |
//!
//! The end is always the last frame: an answer that stops before it means the worker (or the
//! connection to it) was lost.

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use tokio_util::codec::LengthDelimitedCodec;

use crate::ingress_headers::MAX_BODY;
use crate::worker::metadata::AgentResponse;
use crate::worker::order::{ExecEvent, Outcome};

const STDOUT: u8 = 1;
const RESPONSE: u8 = 2;
const FINISHED: u8 = 3;

/// The codec both ends use. A frame holds at most a Metadata-mode answer (capped like a
/// request body) and its content type; anything longer is a broken peer.
pub(crate) fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_BODY + 64 * 1024)
        .new_codec()
}

/// The frame of one event (without its length prefix).
pub(crate) fn encode(event: ExecEvent) -> Bytes {
    match event {
        ExecEvent::Stdout(bytes) => {
            let mut frame = BytesMut::with_capacity(1 + bytes.len());
            frame.put_u8(STDOUT);
            frame.put_slice(&bytes);
            frame.freeze()
        }
        ExecEvent::Response(answer) => {
            let content_type = answer.content_type.unwrap_or_default();
            let mut frame = BytesMut::with_capacity(1 + 4 + content_type.len() + answer.body.len());
            frame.put_u8(RESPONSE);
            frame.put_u32(u32::try_from(content_type.len()).unwrap_or(0));
            frame.put_slice(content_type.as_bytes());
            frame.put_slice(&answer.body);
            frame.freeze()
        }
        ExecEvent::Finished(outcome) => {
            let json = serde_json::to_vec(&outcome).expect("an outcome serialises");
            let mut frame = BytesMut::with_capacity(1 + json.len());
            frame.put_u8(FINISHED);
            frame.put_slice(&json);
            frame.freeze()
        }
    }
}

/// The event of one frame, or why it is not one.
pub(crate) fn decode(mut frame: BytesMut) -> Result<ExecEvent, String> {
    if frame.is_empty() {
        return Err("an empty frame".into());
    }
    let tag = frame.get_u8();
    match tag {
        STDOUT => Ok(ExecEvent::Stdout(frame.freeze())),
        RESPONSE => {
            if frame.len() < 4 {
                return Err("a truncated answer frame".into());
            }
            let length = frame.get_u32() as usize;
            if frame.len() < length {
                return Err("a truncated answer frame".into());
            }
            let content_type = frame.split_to(length);
            let content_type = String::from_utf8(content_type.to_vec())
                .map_err(|_| "an answer whose content type is not UTF-8".to_string())?;
            Ok(ExecEvent::Response(AgentResponse {
                content_type: (!content_type.is_empty()).then_some(content_type),
                body: frame.freeze(),
            }))
        }
        FINISHED => serde_json::from_slice::<Outcome>(&frame)
            .map(ExecEvent::Finished)
            .map_err(|e| format!("an unreadable end frame: {e}")),
        other => Err(format!("a frame of unknown kind {other}")),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn round_trip(event: ExecEvent) -> ExecEvent {
        decode(BytesMut::from(&encode(event)[..])).unwrap()
    }

    #[test]
    fn every_event_survives_the_link() {
        match round_trip(ExecEvent::Stdout(Bytes::from_static(b"\0binary\xff"))) {
            ExecEvent::Stdout(bytes) => assert_eq!(&bytes[..], b"\0binary\xff"),
            other => panic!("{other:?}"),
        }
        match round_trip(ExecEvent::Response(AgentResponse {
            content_type: Some("application/json".into()),
            body: Bytes::from_static(b"{\"ok\":true}"),
        })) {
            ExecEvent::Response(answer) => {
                assert_eq!(answer.content_type.as_deref(), Some("application/json"));
                assert_eq!(&answer.body[..], b"{\"ok\":true}");
            }
            other => panic!("{other:?}"),
        }
        match round_trip(ExecEvent::Response(AgentResponse {
            content_type: None,
            body: Bytes::new(),
        })) {
            ExecEvent::Response(answer) => {
                assert_eq!(answer.content_type, None);
                assert!(answer.body.is_empty());
            }
            other => panic!("{other:?}"),
        }
        for outcome in [
            Outcome::Exited(3),
            Outcome::TimedOut(Duration::from_millis(1500)),
            Outcome::Failed("worker lost".into()),
            Outcome::Unavailable("image r/a:1 is not on this worker".into()),
            Outcome::NoResponse,
            Outcome::Killed {
                code: 137,
                reason: "killed: memory limit 128Mi exceeded".into(),
            },
        ] {
            match round_trip(ExecEvent::Finished(outcome.clone())) {
                ExecEvent::Finished(end) => assert_eq!(end, outcome),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn broken_frames_are_errors_not_panics() {
        assert!(decode(BytesMut::new()).is_err());
        assert!(decode(BytesMut::from(&[9u8, 1, 2][..])).is_err());
        assert!(decode(BytesMut::from(&[RESPONSE, 0, 0][..])).is_err());
        assert!(decode(BytesMut::from(&[RESPONSE, 0, 0, 0, 9, b'a'][..])).is_err());
        assert!(decode(BytesMut::from(&[RESPONSE, 0, 0, 0, 1, 0xff][..])).is_err());
        assert!(decode(BytesMut::from(&[FINISHED, b'{'][..])).is_err());
    }
}
