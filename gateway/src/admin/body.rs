//! Request bodies, read and checked by hand so that every failure is
//! answered in the contract's error shape (actix-web's own extractors
//! answer in theirs): whole within the request's deadline (408), at most
//! 1 MiB (413), `application/json` whenever
//! there is a body (415), JSON (400 `invalid_json`) of the right shape
//! (400 `bad_request`), and payloads the framing can carry (400
//! `invalid_payload`).
//!
//! Objects are strict: a member the endpoint does not know is a
//! `bad_request`, so a misspelt field is never silently ignored.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use actix_web::body::{BodyStream, to_bytes_limited};
use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{FromRequest, HttpRequest, dev};
use base64::Engine as _;
use conn_actor::{CloseReason, Framing};
use serde_json::{Map, Value};

use super::ApiError;
use super::server::RequestClock;

/// The largest body accepted.
pub const MAX_BODY: usize = 1024 * 1024;

/// A request body, read whole: at most [`MAX_BODY`] bytes, and JSON-typed
/// when not empty. Every API handler takes one, so that even a body it
/// ignores is read before the answer.
pub struct Body(pub Bytes);

impl FromRequest for Body {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut dev::Payload) -> Self::Future {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let json_typed = req
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().is_ok_and(is_json_type));
        let stream = BodyStream::new(payload.take());
        let deadline = RequestClock::deadline_of(req);
        Box::pin(async move {
            if declared.is_some_and(|len| len > MAX_BODY as u64) {
                return Err(ApiError::PayloadTooLarge);
            }
            let read = to_bytes_limited(stream, MAX_BODY);
            let bytes = match tokio::time::timeout_at(deadline, read).await {
                Ok(Ok(Ok(bytes))) => bytes,
                // The client went away or sent a broken chunked body.
                Ok(Ok(Err(err))) => {
                    return Err(ApiError::BadRequest(format!("cannot read the body: {err}")));
                }
                Ok(Err(_)) => return Err(ApiError::PayloadTooLarge),
                Err(_) => return Err(ApiError::RequestTimeout),
            };
            if !bytes.is_empty() && json_typed != Some(true) {
                return Err(ApiError::UnsupportedMediaType);
            }
            Ok(Body(bytes))
        })
    }
}

/// `application/json`, any case, with or without parameters.
fn is_json_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
}

impl Body {
    /// The body as a JSON object; `None` when there is no body.
    pub fn object(&self) -> Result<Option<Map<String, Value>>, ApiError> {
        if self.0.is_empty() {
            return Ok(None);
        }
        match serde_json::from_slice::<Value>(&self.0) {
            Ok(Value::Object(map)) => Ok(Some(map)),
            Ok(_) => Err(ApiError::BadRequest(
                "the body must be a JSON object".into(),
            )),
            Err(err) => Err(ApiError::InvalidJson(format!(
                "the body is not JSON: {err}"
            ))),
        }
    }

    /// A message body: `{"data": "text"}` or `{"data_base64": "..."}`.
    /// Returns the payload bytes, checked against `framing`: a slice of
    /// the body itself where the text has no escapes, else bytes of their
    /// own.
    pub fn message(&self, framing: Framing) -> Result<Bytes, ApiError> {
        self.read_message(framing, |text| self.0.slice_ref(text.as_bytes()))
    }

    /// [`Body::message`] as bytes of their own, for a payload that may be
    /// kept (history): a slice of the body would keep the whole read
    /// buffer it came in alive with it. One copy on every path.
    pub fn message_to_keep(&self, framing: Framing) -> Result<Bytes, ApiError> {
        self.read_message(framing, |text| Bytes::copy_from_slice(text.as_bytes()))
    }

    /// The message, a text that is in the body as it stands (no escape)
    /// made into bytes by `in_body`.
    fn read_message(
        &self,
        framing: Framing,
        in_body: impl FnOnce(&str) -> Bytes,
    ) -> Result<Bytes, ApiError> {
        match self.plain_text() {
            // Fits every framing unchecked: a JSON text holds a newline or
            // a `\r` only escaped.
            Some(Cow::Borrowed(text)) => Ok(in_body(text)),
            Some(Cow::Owned(text)) => {
                fits(text.as_bytes(), framing, "the payload")?;
                Ok(Bytes::from(text))
            }
            None => self.any_message(framing).map(Bytes::from),
        }
    }

    /// The common case, `{"data": "text"}` alone, read without building a
    /// JSON tree: the text borrowed from the body where it has no escape
    /// (a push of 16 KiB was copied twice more before, into a JSON string
    /// and out of it), unescaped once where it has. `None` for anything
    /// else, which [`Body::any_message`] reads or refuses.
    fn plain_text(&self) -> Option<Cow<'_, str>> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Plain<'a> {
            #[serde(borrow)]
            data: Cow<'a, str>,
        }
        // An object: serde's derive would take an array of the fields too.
        if self.0.trim_ascii_start().first() != Some(&b'{') {
            return None;
        }
        serde_json::from_slice::<Plain<'_>>(&self.0)
            .ok()
            .map(|plain| plain.data)
    }

    /// Any message body, as [`Body::message`] describes.
    fn any_message(&self, framing: Framing) -> Result<Vec<u8>, ApiError> {
        let map = self.object()?.ok_or_else(|| {
            ApiError::BadRequest(r#"a message body is required: {"data": "text"}"#.into())
        })?;
        only_members(&map, &["data", "data_base64"])?;
        let payload = match (map.get("data"), map.get("data_base64")) {
            (Some(data), None) => string(data, "data")?.as_bytes().to_vec(),
            (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
                .decode(string(encoded, "data_base64")?)
                .map_err(|err| {
                    ApiError::InvalidPayload(format!("data_base64 is not standard base64: {err}"))
                })?,
            _ => {
                return Err(ApiError::BadRequest(
                    "give exactly one of data and data_base64".into(),
                ));
            }
        };
        fits(&payload, framing, "the payload")?;
        Ok(payload)
    }

    /// The optional close body: `{"reason": "admin", "message": "text"}`.
    /// Only `admin` is accepted as a reason: a close the API asks for is
    /// counted as one, whatever word it would print. An empty message is
    /// no message.
    pub fn close(&self, framing: Framing) -> Result<(CloseReason, Option<Vec<u8>>), ApiError> {
        let Some(map) = self.object()? else {
            return Ok((CloseReason::Admin, None));
        };
        only_members(&map, &["reason", "message"])?;
        match map.get("reason") {
            None | Some(Value::Null) => {}
            Some(reason) if string(reason, "reason")? == "admin" => {}
            Some(_) => {
                return Err(ApiError::BadRequest(r#"reason must be "admin""#.into()));
            }
        }
        let message = match map.get("message") {
            None | Some(Value::Null) => None,
            Some(message) => Some(string(message, "message")?.as_bytes().to_vec()),
        };
        let message = message.filter(|m| !m.is_empty());
        if let Some(message) = &message {
            fits(message, framing, "the message")?;
        }
        Ok((CloseReason::Admin, message))
    }

    /// Refuses any body: for endpoints that take none, a non-empty body
    /// is a request of the wrong shape.
    pub fn none(&self) -> Result<(), ApiError> {
        match self.object()? {
            Some(map) if !map.is_empty() => {
                Err(ApiError::BadRequest("this endpoint takes no body".into()))
            }
            _ => Ok(()),
        }
    }
}

fn only_members(map: &Map<String, Value>, known: &[&str]) -> Result<(), ApiError> {
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        Some(unknown) => Err(ApiError::BadRequest(format!(
            "unknown member `{unknown}`; expected {}",
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

fn string<'a>(value: &'a Value, name: &str) -> Result<&'a str, ApiError> {
    value
        .as_str()
        .ok_or_else(|| ApiError::BadRequest(format!("`{name}` must be a string")))
}

/// Under `lines` a `\n` would end the frame early, and a trailing `\r`
/// would be read as part of the line ending and lost.
fn fits(bytes: &[u8], framing: Framing, what: &str) -> Result<(), ApiError> {
    if framing == Framing::Lines && bytes.contains(&b'\n') {
        return Err(ApiError::InvalidPayload(format!(
            "{what} holds a newline, which lines framing cannot carry"
        )));
    }
    if framing == Framing::Lines && bytes.ends_with(b"\r") {
        return Err(ApiError::InvalidPayload(format!(
            "{what} ends in \\r, which a lines client would read as part of the line ending"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(body: &str, framing: Framing) -> Result<Vec<u8>, &'static str> {
        Body(Bytes::copy_from_slice(body.as_bytes()))
            .message(framing)
            .map(|payload| payload.to_vec())
            .map_err(|e| e.code())
    }

    #[test]
    fn messages() {
        let lines = Framing::Lines;
        assert_eq!(
            code(r#"{"data":"hi there"}"#, lines),
            Ok(b"hi there".to_vec())
        );
        assert_eq!(code(r#"{"data":""}"#, lines), Ok(Vec::new()));
        assert_eq!(
            code(r#"{"data_base64":"AAEK"}"#, Framing::Length),
            Ok(vec![0, 1, 10])
        );
        assert_eq!(
            code(r#"{"data_base64":"AAEK"}"#, lines),
            Err("invalid_payload")
        );
        assert_eq!(code(r#"{"data":"a\nb"}"#, lines), Err("invalid_payload"));
        assert_eq!(code(r#"{"data":"ab\r"}"#, lines), Err("invalid_payload"));
        assert_eq!(
            code(r#"{"data_base64":"YQ0="}"#, lines),
            Err("invalid_payload")
        );
        assert_eq!(code(r#"{"data":"a\rb"}"#, lines), Ok(b"a\rb".to_vec()));
        assert_eq!(
            code(r#"{"data":"ab\r"}"#, Framing::Length),
            Ok(b"ab\r".to_vec())
        );
        assert_eq!(
            code(r#"{"data":"a\nb"}"#, Framing::Length),
            Ok(b"a\nb".to_vec())
        );
        assert_eq!(
            code(r#"{"data_base64":"AAE"}"#, lines),
            Err("invalid_payload")
        );
        assert_eq!(
            code(r#"{"data_base64":"-_8="}"#, lines),
            Err("invalid_payload")
        );
        assert_eq!(
            code(r#"{"data":"x","data_base64":"eA=="}"#, lines),
            Err("bad_request")
        );
        assert_eq!(code(r#"{}"#, lines), Err("bad_request"));
        assert_eq!(code(r#"{"data":1}"#, lines), Err("bad_request"));
        assert_eq!(code(r#"{"data":null}"#, lines), Err("bad_request"));
        assert_eq!(code(r#"{"data":"x","extra":1}"#, lines), Err("bad_request"));
        assert_eq!(code(r#"["data"]"#, lines), Err("bad_request"));
        assert_eq!(code(r#"{"data":"x""#, lines), Err("invalid_json"));
        assert_eq!(code("", lines), Err("bad_request"));
    }

    #[test]
    fn plain_text_is_shared_with_the_body_and_anything_else_read_in_full() {
        let body = Body(Bytes::from_static(br#" { "data" : "hello" } "#));
        let payload = body.message(Framing::Lines).map_err(|e| e.code());
        let inside = body.0.as_ptr_range();
        assert!(
            payload.is_ok_and(|p| p == b"hello"[..] && inside.contains(&p.as_ptr())),
            "no escape: a slice of the body"
        );
        let lines = Framing::Lines;
        // Escapes (unescaped once), a repeated member, a member too many.
        assert_eq!(code(r#"{"data":"a\"b\u00e9"}"#, lines), Ok("a\"bé".into()));
        assert_eq!(code(r#"{"data":"a","data":"b"}"#, lines), Ok(b"b".to_vec()));
        assert_eq!(
            code(r#"{"data":"a","data_base64":null}"#, lines),
            Err("bad_request")
        );
        // A raw newline or `\r` is not JSON; an escaped one still meets the
        // framing.
        assert_eq!(code("{\"data\":\"a\nb\"}", lines), Err("invalid_json"));
        assert_eq!(code("{\"data\":\"ab\r\"}", lines), Err("invalid_json"));
        assert_eq!(code(r#"{"data":"a\nb"}"#, lines), Err("invalid_payload"));
        // To keep: never a slice of the body, and the same answers.
        let kept = body.message_to_keep(lines).map_err(|e| e.code());
        assert!(kept.is_ok_and(|p| p == b"hello"[..] && !inside.contains(&p.as_ptr())));
        let keep = |text: &str| {
            Body(Bytes::copy_from_slice(text.as_bytes()))
                .message_to_keep(lines)
                .map(|payload| payload.to_vec())
                .map_err(|e| e.code())
        };
        assert_eq!(keep(r#"{"data":"a\"b"}"#), Ok(b"a\"b".to_vec()));
        assert_eq!(keep(r#"{"data":"a\nb"}"#), Err("invalid_payload"));
    }

    #[test]
    fn closes() {
        let check = |body: &str| {
            Body(Bytes::copy_from_slice(body.as_bytes()))
                .close(Framing::Lines)
                .map(|(reason, message)| (reason.as_str(), message))
                .map_err(|e| e.code())
        };
        assert_eq!(check(""), Ok(("admin", None)));
        assert_eq!(check("{}"), Ok(("admin", None)));
        assert_eq!(check(r#"{"reason":"admin"}"#), Ok(("admin", None)));
        assert_eq!(check(r#"{"message":""}"#), Ok(("admin", None)));
        assert_eq!(
            check(r#"{"message":"bye now"}"#),
            Ok(("admin", Some(b"bye now".to_vec())))
        );
        assert_eq!(check(r#"{"reason":"idle"}"#), Err("bad_request"));
        assert_eq!(check(r#"{"reason":3}"#), Err("bad_request"));
        assert_eq!(check(r#"{"message":"a\nb"}"#), Err("invalid_payload"));
        assert_eq!(check(r#"{"message":"ab\r"}"#), Err("invalid_payload"));
        assert_eq!(check(r#"{"why":"x"}"#), Err("bad_request"));
        assert_eq!(check("nope"), Err("invalid_json"));
    }

    #[test]
    fn json_types() {
        assert!(is_json_type("application/json"));
        assert!(is_json_type("Application/JSON; charset=utf-8"));
        assert!(!is_json_type("text/plain"));
        assert!(!is_json_type("application/jsonx"));
        assert!(!is_json_type(""));
    }
}
