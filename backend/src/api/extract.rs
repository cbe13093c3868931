//! Extractors that turn malformed requests into problem answers naming the
//! field and the rule, instead of axum's plain-text rejections.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{CONTENT_TYPE, IF_MATCH};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::service::Precondition;

/// A JSON body, checked for content type and size, decoded with the path of
/// the first bad field.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let is_json = essence == "application/json"
            || (essence.starts_with("application/") && essence.ends_with("+json"));
        if !is_json {
            return Err(Error::UnsupportedMediaType(format!(
                "the body must be JSON: send Content-Type: application/json (got \"{content_type}\")"
            )));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                Error::PayloadTooLarge("the request body is larger than the server accepts".into())
            } else {
                Error::BadRequest(format!("failed to read the request body: {rejection}"))
            }
        })?;
        decode(&bytes).map(Self)
    }
}

/// Decodes JSON, reporting syntax errors as 400 and shape errors as 422 with
/// the JSON path of the offending field.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    // Every body is an object; serde would also read a struct from an array
    // (`[null, null]`), which no client means.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(Error::invalid("body", "must be a JSON object"));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_data() {
            let field = if path == "." {
                "body".to_string()
            } else {
                path
            };
            Error::invalid(field, strip_position(&inner.to_string()))
        } else {
            Error::BadRequest(format!("the body is not valid JSON: {inner}"))
        }
    })?;
    deserializer
        .end()
        .map_err(|e| Error::BadRequest(format!("the body is not valid JSON: {e}")))?;
    Ok(value)
}

/// serde's messages end in "at line 1 column 42", which means nothing once
/// the field is named.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
    }
}

/// Query parameters, with bad values answered as field errors.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        let query = parts.uri.query().unwrap_or("");
        // PostgreSQL text cannot hold NUL; refuse it here, naming the parameter.
        if let Some((name, _)) =
            form_urlencoded::parse(query.as_bytes()).find(|(_, value)| value.contains('\0'))
        {
            return Err(Error::invalid(
                format!("query.{name}"),
                "must not contain the NUL character",
            ));
        }
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(Self)
            .map_err(|e| {
                let field = e.path().to_string();
                Error::invalid(format!("query.{field}"), e.into_inner().to_string())
            })
    }
}

/// The `If-Match` precondition: the ETag (the tenant's generation) the client
/// last saw. Absent means "no precondition".
#[derive(Debug, Clone, Default)]
pub struct IfMatch(Option<Vec<String>>);

impl IfMatch {
    /// The generations the client named, for the service to check (a 412
    /// when the tenant is at none of them). A tag that names no generation
    /// matches nothing.
    pub fn precondition(&self) -> Precondition {
        match &self.0 {
            None => Precondition::None,
            Some(tags) if tags.iter().any(|t| t == "*") => Precondition::None,
            Some(tags) => Precondition::Generation(
                tags.iter()
                    .filter_map(|t| {
                        let inner = t.strip_prefix('"')?.strip_suffix('"')?;
                        let generation: i64 = inner.parse().ok()?;
                        (etag(generation) == *t).then_some(generation)
                    })
                    .collect(),
            ),
        }
    }
}

/// The ETag of a tenant at a generation. It versions the desired state; the
/// sync status may change under the same tag.
pub fn etag(generation: i64) -> String {
    format!("\"{generation}\"")
}

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Error> {
        let Some(value) = parts.headers.get(IF_MATCH) else {
            return Ok(Self(None));
        };
        let bad = || {
            Error::BadRequest(
                "If-Match must be \"*\" or a list of quoted ETags such as \"3\"".into(),
            )
        };
        let text = value.to_str().map_err(|_| bad())?;
        let tags: Vec<String> = text.split(',').map(|t| t.trim().to_string()).collect();
        let well_formed = tags.iter().all(|t| t == "*" || is_entity_tag(t));
        if !well_formed || tags.is_empty() {
            return Err(bad());
        }
        Ok(Self(Some(tags)))
    }
}

/// RFC 9110 §8.8.3: `[W/]"<etagc>*"`. A weak tag is well formed but never
/// matches, since `If-Match` compares strongly.
fn is_entity_tag(tag: &str) -> bool {
    let quoted = tag.strip_prefix("W/").unwrap_or(tag);
    quoted.len() >= 2
        && quoted.starts_with('"')
        && quoted.ends_with('"')
        && quoted[1..quoted.len() - 1]
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80)
}

pub use crate::state::RequestId;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct AllOptional {
        #[allow(dead_code)]
        version: Option<i32>,
    }

    #[test]
    fn a_body_is_an_object_never_an_array_serde_would_read_as_a_struct() {
        for body in [&b"[null]"[..], b"  [1]", b"[]"] {
            match decode::<AllOptional>(body) {
                Err(Error::Invalid(errors)) => {
                    assert_eq!(errors[0].field, "body");
                    assert_eq!(errors[0].rule, "must be a JSON object");
                }
                other => panic!("{}: {other:?}", String::from_utf8_lossy(body)),
            }
        }
        assert!(decode::<AllOptional>(b"{}").is_ok());
    }
}
