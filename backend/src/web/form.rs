//! Dashboard form posts. One extractor, `Posted<F>`, reads every form: it
//! signs the viewer in, checks the session's CSRF token before anything else,
//! and only then yields the typed form, the actor and the precondition. A
//! handler gets a form no other way, so none can forget the check.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde::de::value::{Error as DeError, SeqDeserializer};
use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};

use super::{PageError, Viewer};
use crate::auth::constant_time_eq;
use crate::error::Error;
use crate::service::{Actor, Precondition};
use crate::state::{AppState, RequestId};

/// The field every form carries with the session's CSRF token.
const CSRF_FIELD: &str = "_csrf";
/// The field edit forms carry with the tenant's generation as the page showed it.
const GENERATION_FIELD: &str = "generation";

/// A form of the dashboard: its fields (`#[derive(Deserialize)]`, values
/// trimmed, an empty text box an absent `Option`, a checkbox a `bool`, a
/// repeated name a `Vec`) and where the service's field errors land on it.
pub trait DashboardForm: DeserializeOwned + Send {
    /// Field names of the service's errors (or their start: `namespaces`
    /// for `namespaces[1].name`) and the form field each is shown beside.
    /// Errors of unlisted fields land under their first name part.
    const ERROR_FIELDS: &'static [(&'static str, &'static str)] = &[];

    /// A refusal of this form, its field errors under the form's names.
    fn refused(error: Error) -> Refusal {
        Refusal::new(error, Self::ERROR_FIELDS)
    }
}

/// A form post that carried the session's CSRF token.
pub struct Posted<F> {
    pub viewer: Viewer,
    /// Who asked, for the audit trail.
    pub actor: Actor,
    /// The tenant's generation when the page was shown (the hidden
    /// `generation` field). A form without one changes the tenant as it is;
    /// one that does not parse matches no generation.
    pub precondition: Precondition,
    pub form: F,
}

impl<F: DashboardForm> FromRequest<AppState> for Posted<F> {
    type Rejection = Response;

    async fn from_request(request: Request, app: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let viewer = Viewer::from_request_parts(&mut parts, app).await?;
        let Ok(request_id) = RequestId::from_request_parts(&mut parts, app).await;
        if !is_form(&parts) {
            return Err(refusal(Error::UnsupportedMediaType(
                "a form is posted as application/x-www-form-urlencoded".into(),
            )));
        }
        let body = Bytes::from_request(Request::from_parts(parts, body), app)
            .await
            .map_err(IntoResponse::into_response)?;
        let mut fields = Fields::parse(&body);
        let token = fields.take_one(CSRF_FIELD);
        if !token.is_some_and(|t| constant_time_eq(&t, &viewer.user.csrf_token)) {
            return Err(refusal(Error::Forbidden(
                "the form is missing its CSRF token; reload the page and try again".into(),
            )));
        }
        let precondition = match fields.take_one(GENERATION_FIELD).as_deref() {
            None | Some("") => Precondition::None,
            Some(shown) => shown
                .parse()
                .map_or(Precondition::Generation(Vec::new()), Precondition::at),
        };
        let form = fields.into_form().map_err(|e| {
            refusal(Error::BadRequest(format!(
                "the form was not understood ({e}); reload the page and try again"
            )))
        })?;
        Ok(Self {
            actor: request_id.actor(&viewer.principal),
            viewer,
            precondition,
            form,
        })
    }
}

fn refusal(error: Error) -> Response {
    PageError(error).into_response()
}

fn is_form(parts: &axum::http::request::Parts) -> bool {
    parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            mime.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// A form's refusal by the service, with its field errors by form field.
pub struct Refusal {
    pub error: Error,
    /// Form field to message; several errors of one field are joined.
    pub fields: BTreeMap<String, String>,
}

impl Refusal {
    /// A change refused because the tenant moved on since the page was shown
    /// becomes the form's conflict; other errors stay as they are.
    fn new(error: Error, map: &[(&str, &str)]) -> Self {
        let error = match error {
            Error::PreconditionFailed(_) => Error::conflict(
                "This tenant was changed since you opened it, so your change was not saved; \
                 the page now shows the current values: check them and make your change again.",
            ),
            other => other,
        };
        let mut fields: BTreeMap<String, String> = BTreeMap::new();
        let reported = match &error {
            Error::Invalid(errors)
            | Error::Conflict { errors, .. }
            | Error::Refused { errors, .. } => errors.as_slice(),
            _ => &[],
        };
        for e in reported {
            let (field, exact) = form_field(&e.field, map);
            let message = if exact {
                e.rule.clone()
            } else {
                format!("{}: {}", e.field, e.rule)
            };
            fields
                .entry(field.to_string())
                .and_modify(|m| {
                    m.push_str("; ");
                    m.push_str(&message);
                })
                .or_insert(message);
        }
        Self { error, fields }
    }
}

/// The form field an error of the service's `field` lands beside, and
/// whether it names that field exactly (otherwise its message says which
/// part is meant).
fn form_field<'a>(field: &'a str, map: &[(&str, &'a str)]) -> (&'a str, bool) {
    let within = |whole: &str| {
        field
            .strip_prefix(whole)
            .map(|rest| match rest.chars().next() {
                None => Some(true),
                Some('.' | '[') => Some(false),
                Some(_) => None,
            })
            .unwrap_or(None)
    };
    for (service, form) in map {
        if let Some(exact) = within(service) {
            return (form, exact);
        }
    }
    let first = field.split(['.', '[']).next().unwrap_or(field);
    (first, first == field)
}

/// The posted fields by name, values trimmed, in the order sent.
struct Fields(BTreeMap<String, Vec<String>>);

impl Fields {
    fn parse(body: &[u8]) -> Self {
        let mut fields: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in form_urlencoded::parse(body) {
            fields
                .entry(name.into_owned())
                .or_default()
                .push(value.trim().to_string());
        }
        Self(fields)
    }

    /// The one value of a field; a field sent twice has none.
    fn take_one(&mut self, name: &str) -> Option<String> {
        let mut values = self.0.remove(name)?;
        (values.len() == 1).then(|| values.remove(0))
    }

    fn into_form<F: DeserializeOwned>(self) -> Result<F, DeError> {
        let map = de::value::MapDeserializer::new(
            self.0
                .into_iter()
                .map(|(name, values)| (name, Values(values))),
        );
        F::deserialize(map)
    }
}

/// One field's values: one, or several for a name sent more than once.
struct Values(Vec<String>);

impl<'de> IntoDeserializer<'de, DeError> for Values {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> de::Deserializer<'de> for Values {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, DeError> {
        if self.0.len() == 1 {
            visitor.visit_string(self.0.remove(0))
        } else {
            self.deserialize_seq(visitor)
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_seq(SeqDeserializer::new(self.0.into_iter()))
    }

    /// An empty text box is no value.
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.0.iter().all(String::is_empty) {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    /// A checkbox is sent only when it is checked, whatever its value.
    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_bool(true)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        mut self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        if self.0.len() == 1 {
            visitor.visit_enum(self.0.remove(0).into_deserializer())
        } else {
            Err(de::Error::custom("a choice was sent more than once"))
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct tuple tuple_struct map struct
        identifier ignored_any
    }
}

/// The names a text box lists, separated by commas, spaces or lines
/// (`acme, globex`).
pub fn names(text: &str) -> Vec<String> {
    text.split([',', ' ', '\n'])
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Deserialize, Default, Debug, PartialEq)]
    #[serde(default)]
    struct Sample {
        name: String,
        budget: Option<String>,
        checked: bool,
        unchecked: bool,
        scope: Vec<String>,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "kebab-case")]
    enum Choice {
        Tenant,
        TenantIdp,
    }

    #[derive(Deserialize)]
    struct Chosen {
        view: Choice,
    }

    #[derive(Deserialize)]
    struct Rest {
        #[serde(flatten)]
        rest: BTreeMap<String, String>,
    }

    fn parsed<F: DeserializeOwned>(body: &str) -> Result<F, DeError> {
        Fields::parse(body.as_bytes()).into_form()
    }

    #[test]
    fn a_form_reads_text_checkboxes_and_repeated_names() {
        let form: Sample =
            parsed("name=+acme+&budget=&checked=on&scope=tenants%3Aread&scope=tenants%3Awrite")
                .unwrap();
        assert_eq!(
            form,
            Sample {
                name: "acme".into(),
                budget: None,
                checked: true,
                unchecked: false,
                scope: vec!["tenants:read".into(), "tenants:write".into()],
            }
        );
        let one: Sample = parsed("scope=tenants%3Aread&budget=4").unwrap();
        assert_eq!(one.scope, vec!["tenants:read".to_string()]);
        assert_eq!(one.budget.as_deref(), Some("4"));
        assert!(
            parsed::<Sample>("name=a&name=b").is_err(),
            "one text, twice"
        );
    }

    #[test]
    fn choices_are_their_variants_and_the_rest_is_a_map() {
        let chosen: Chosen = parsed("view=tenant-idp").unwrap();
        assert_eq!(chosen.view, Choice::TenantIdp);
        assert!(parsed::<Chosen>("view=root").is_err());
        assert!(parsed::<Chosen>("").is_err());
        let rest: Rest = parsed("requests.cpu=1&pods=").unwrap();
        assert_eq!(rest.rest.get("requests.cpu").map(String::as_str), Some("1"));
        assert_eq!(rest.rest.get("pods").map(String::as_str), Some(""));
    }

    #[test]
    fn the_token_and_the_generation_are_taken_once() {
        let mut fields = Fields::parse(b"_csrf=a&_csrf=b&generation=7");
        assert_eq!(fields.take_one(CSRF_FIELD), None, "two tokens are none");
        assert_eq!(fields.take_one(GENERATION_FIELD).as_deref(), Some("7"));
        assert!(fields.0.is_empty());
    }

    #[test]
    fn errors_land_beside_the_form_field_declared_for_them() {
        let map = [
            ("budget.requests.cpu", "budget_cpu"),
            ("namespaces", "namespaces"),
        ];
        let error = Error::Invalid(vec![
            crate::domain::FieldError::new("budget.requests.cpu", "must be a quantity"),
            crate::domain::FieldError::new("namespaces[0].name", "must be a label"),
            crate::domain::FieldError::new("namespaces[1].name", "appears twice"),
            crate::domain::FieldError::new("registries[0]", "must end in /"),
            crate::domain::FieldError::new("slug", "is taken"),
        ]);
        let refusal = Refusal::new(error, &map);
        let get = |f: &str| refusal.fields.get(f).map(String::as_str);
        assert_eq!(get("budget_cpu"), Some("must be a quantity"));
        assert_eq!(
            get("namespaces"),
            Some("namespaces[0].name: must be a label; namespaces[1].name: appears twice")
        );
        assert_eq!(get("registries"), Some("registries[0]: must end in /"));
        assert_eq!(get("slug"), Some("is taken"));
        assert_eq!(form_field("namespacesx", &map), ("namespacesx", true));
    }

    #[test]
    fn a_stale_page_is_told_as_a_conflict() {
        let refusal = Refusal::new(Error::PreconditionFailed("old".into()), &[]);
        assert!(
            refusal
                .error
                .problem()
                .detail
                .contains("changed since you opened it")
        );
    }
}
