//! Turning a create-order body into domain values, reporting every bad field
//! at once. The body is read as a JSON object first so that unknown fields,
//! wrong types and bad values all come back together in one 422.

use crate::api::error::{ApiError, FieldError};
use crate::domain::{
    Amount, CardNumber, Description, IdNumber, Invalid, Language, MerchantOrderId, Mode, NotifyUrl,
    Phone,
};
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// `POST /v1/orders` body. Give `card_number` and `id_number` for a new card,
/// or neither for a payment with the card bound to `phone`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // documents the body; parsing is field by field below
pub struct CreateOrderRequest {
    /// Your reference: 1-32 letters or digits, unique per merchant.
    #[schema(example = "A20261125001", pattern = "^[A-Za-z0-9]{1,32}$")]
    merchant_order_id: String,
    /// Amount in fen (¥1.00 = 100), at most `orders.max_amount`.
    #[schema(example = 12345, minimum = 1, maximum = 100000000)]
    amount: i64,
    /// Always `CNY`.
    #[schema(example = "CNY", pattern = "^CNY$")]
    currency: String,
    /// Shown to the merchant, never spoken: at most 128 characters, no
    /// control characters.
    #[schema(
        example = "Membership top-up",
        max_length = 128,
        pattern = r"^[^\x00-\x1F\x7F-\x9F]*$"
    )]
    description: Option<String>,
    /// `callback` (default), `transfer`, `inbound` or `assisted`.
    #[schema(value_type = Option<crate::domain::Mode>, example = "callback")]
    mode: Option<String>,
    /// The cardholder's mobile number; `+86` is accepted.
    #[schema(example = "13800138000", pattern = r"^(\+86|0086|86)?1[3-9][0-9]{9}$")]
    phone: String,
    /// 16-19 digits, Luhn-valid. Omit (with `id_number`) for a bound payment.
    #[schema(example = "6222000000000017", pattern = "^[0-9]{16,19}$")]
    card_number: Option<String>,
    /// 18-character PRC resident ID number (17 digits and a check digit or
    /// `X`, ISO 7064 MOD 11-2, with a real birth date).
    #[schema(example = "11010519491231002X", pattern = "^[0-9]{17}[0-9Xx]$")]
    id_number: Option<String>,
    /// Prompt language: `zh` (default) or `en`.
    #[schema(value_type = Option<crate::domain::Language>, example = "zh")]
    language: Option<String>,
    /// Where webhooks for this order go (default: the merchant's): an https
    /// URL (http only where the operator set `webhooks.allow_http`) of a
    /// public address, with a host, no credentials, at most 2048
    /// characters. A loopback, private, link-local, CGNAT, unique-local,
    /// multicast, reserved or IPv4-mapped address, in any spelling, or
    /// `localhost`, is refused with 422 `invalid_notify_url` unless the
    /// operator listed its `host:port`; a name resolving to one is refused
    /// when the webhook is sent (`last_error_class` `blocked_address`). An
    /// empty string is not a URL (422 `invalid_notify_url`); omit the field,
    /// or send null, for the merchant's default.
    #[schema(
        example = "https://shop.example/voicepay/webhooks",
        min_length = 1,
        max_length = 2048,
        pattern = "^[Hh][Tt][Tt][Pp][Ss]?://[^@/?#]+([/?#].*)?$"
    )]
    notify_url: Option<String>,
    /// Also send progress webhooks (`order.calling`, `order.answered`,
    /// `order.authorizing`, and an assisted call's `capture.progress`), not
    /// only the final one. Default false.
    notify_progress: Option<bool>,
}

const FIELDS: &[&str] = &[
    "merchant_order_id",
    "amount",
    "currency",
    "description",
    "mode",
    "phone",
    "card_number",
    "id_number",
    "language",
    "notify_url",
    "notify_progress",
];

/// A validated order request.
#[derive(Debug)]
pub struct NewOrder {
    pub merchant_order_id: MerchantOrderId,
    pub amount: Amount,
    pub description: Option<Description>,
    pub mode: Mode,
    pub phone: Phone,
    /// `None` for a bound payment.
    pub card: Option<(CardNumber, IdNumber)>,
    pub language: Language,
    pub notify_url: Option<NotifyUrl>,
    /// Progress webhooks wanted, besides the final one.
    pub notify_progress: bool,
}

/// Parses (strictly: no key twice, see [`crate::api::json`]) and validates
/// the raw body.
pub fn parse(body: &[u8], max_amount: i64) -> Result<NewOrder, ApiError> {
    from_value(crate::api::json::parse(body)?, max_amount)
}

/// Validates a body already parsed by [`crate::api::json::parse`].
pub fn from_value(value: Value, max_amount: i64) -> Result<NewOrder, ApiError> {
    let obj = crate::api::json::object(value)?;
    let mut errors: Vec<FieldError> = obj
        .keys()
        .filter(|k| !FIELDS.contains(&k.as_str()))
        .map(|k| FieldError::new(k, "unknown_field", "this field is not part of the order"))
        .collect();
    let mut f = Fields {
        obj: &obj,
        errors: &mut errors,
    };

    let merchant_order_id = f.required_str("merchant_order_id", MerchantOrderId::parse);
    let amount = f.required_int("amount", |n| Amount::parse(n, max_amount));
    let currency = f.required_str("currency", |s| {
        if s == "CNY" {
            Ok(())
        } else {
            Err(Invalid::new("invalid_currency", "currency must be CNY"))
        }
    });
    let description = f.optional_str("description", Description::parse);
    let mode = f.optional_str("mode", Mode::parse);
    let phone = f.required_str("phone", Phone::parse);
    let card_number = f.optional_str("card_number", CardNumber::parse);
    let id_number = f.optional_str("id_number", IdNumber::parse);
    let language = f.optional_str("language", Language::parse);
    let notify_url = f.optional_str("notify_url", NotifyUrl::parse);
    let notify_progress = f.optional_bool("notify_progress");

    let has = |k: &str| obj.get(k).is_some_and(|v| !v.is_null());
    match (has("card_number"), has("id_number")) {
        (true, false) => errors.push(FieldError::new(
            "id_number",
            "required",
            "id_number is required with card_number",
        )),
        (false, true) => errors.push(FieldError::new(
            "card_number",
            "required",
            "card_number is required with id_number",
        )),
        _ => {}
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    // Every `None` below was reported as an error above.
    let (Some(merchant_order_id), Some(amount), Some(()), Some(phone)) =
        (merchant_order_id, amount, currency, phone)
    else {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "validation lost a field error"
        )));
    };
    Ok(NewOrder {
        merchant_order_id,
        amount,
        description: description.flatten(),
        mode: mode.flatten().unwrap_or(Mode::Callback),
        phone,
        card: card_number.flatten().zip(id_number.flatten()),
        language: language.flatten().unwrap_or(Language::Zh),
        notify_url: notify_url.flatten(),
        notify_progress: notify_progress.unwrap_or(false),
    })
}

/// Reads typed fields out of the object, collecting errors as it goes.
struct Fields<'a> {
    obj: &'a Map<String, Value>,
    errors: &'a mut Vec<FieldError>,
}

impl Fields<'_> {
    fn fail(&mut self, field: &str, e: Invalid) {
        self.errors.push(FieldError::new(field, e.code, e.message));
    }

    fn required_str<T>(
        &mut self,
        k: &str,
        parse: impl FnOnce(&str) -> Result<T, Invalid>,
    ) -> Option<T> {
        match self.obj.get(k) {
            None | Some(Value::Null) => {
                self.fail(k, Invalid::new("required", format!("{k} is required")));
                None
            }
            Some(v) => self.string(k, v, parse),
        }
    }

    /// `Some(None)` when absent or null; `None` when present but bad.
    fn optional_str<T>(
        &mut self,
        k: &str,
        parse: impl FnOnce(&str) -> Result<T, Invalid>,
    ) -> Option<Option<T>> {
        match self.obj.get(k) {
            None | Some(Value::Null) => Some(None),
            Some(v) => self.string(k, v, parse).map(Some),
        }
    }

    fn string<T>(
        &mut self,
        k: &str,
        v: &Value,
        parse: impl FnOnce(&str) -> Result<T, Invalid>,
    ) -> Option<T> {
        let Value::String(s) = v else {
            self.fail(
                k,
                Invalid::new("wrong_type", format!("{k} must be a string")),
            );
            return None;
        };
        parse(s).map_err(|e| self.fail(k, e)).ok()
    }

    /// `None` when absent or null, or (reported) not a boolean.
    fn optional_bool(&mut self, k: &str) -> Option<bool> {
        match self.obj.get(k) {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => {
                self.fail(
                    k,
                    Invalid::new("wrong_type", format!("{k} must be true or false")),
                );
                None
            }
        }
    }

    fn required_int<T>(
        &mut self,
        k: &str,
        parse: impl FnOnce(i64) -> Result<T, Invalid>,
    ) -> Option<T> {
        match self.obj.get(k) {
            None | Some(Value::Null) => {
                self.fail(k, Invalid::new("required", format!("{k} is required")));
                None
            }
            Some(Value::Number(n)) if n.is_i64() => parse(n.as_i64().unwrap_or_default())
                .map_err(|e| self.fail(k, e))
                .ok(),
            Some(_) => {
                self.fail(
                    k,
                    Invalid::new(
                        "wrong_type",
                        format!("{k} must be an integer number of fen"),
                    ),
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(body: &str) -> Vec<(String, String)> {
        match parse(body.as_bytes(), 1_000_000) {
            Err(ApiError::Validation(f)) => f.into_iter().map(|e| (e.field, e.code)).collect(),
            other => panic!("expected validation error, got {other:?}"),
        }
    }

    const GOOD: &str = r#"{"merchant_order_id":"A1","amount":100,"currency":"CNY","phone":"13800138000",
        "card_number":"6222000000000017","id_number":"11010519491231002X"}"#;

    #[test]
    fn a_good_body_parses() {
        let o = parse(GOOD.as_bytes(), 1_000_000).unwrap();
        assert_eq!(o.amount.fen(), 100);
        assert_eq!(o.mode, Mode::Callback);
        assert_eq!(o.language, Language::Zh);
        assert!(o.card.is_some());
        assert!(!o.notify_progress);
    }

    #[test]
    fn notify_progress_is_an_optional_boolean() {
        let with = GOOD.replace("\"amount\"", "\"notify_progress\":true,\"amount\"");
        assert!(parse(with.as_bytes(), 1_000_000).unwrap().notify_progress);
        let bad = GOOD.replace("\"amount\"", "\"notify_progress\":\"yes\",\"amount\"");
        let Err(ApiError::Validation(f)) = parse(bad.as_bytes(), 1_000_000) else {
            panic!("a string is not a boolean")
        };
        assert_eq!(f[0].field, "notify_progress");
        assert_eq!(f[0].code, "wrong_type");
    }

    #[test]
    fn every_bad_field_is_listed() {
        let got = fields(
            r#"{"merchant_order_id":"a-b","amount":0,"currency":"USD","phone":"123",
            "card_number":"6222000000000018","id_number":"110105194912310021","mode":"x",
            "language":"fr","notify_url":"ftp://x","colour":"red"}"#,
        );
        let names: Vec<&str> = got.iter().map(|(f, _)| f.as_str()).collect();
        for f in [
            "merchant_order_id",
            "amount",
            "currency",
            "phone",
            "card_number",
            "id_number",
            "mode",
            "language",
            "notify_url",
            "colour",
        ] {
            assert!(names.contains(&f), "{f} missing from {got:?}");
        }
    }

    #[test]
    fn wrong_types_and_missing_fields() {
        let got = fields(r#"{"amount":"100","phone":13800138000}"#);
        assert!(got.contains(&("amount".into(), "wrong_type".into())));
        assert!(got.contains(&("phone".into(), "wrong_type".into())));
        assert!(got.contains(&("merchant_order_id".into(), "required".into())));
        assert!(got.contains(&("currency".into(), "required".into())));
        let got = fields(
            r#"{"merchant_order_id":"A","amount":1.5,"currency":"CNY","phone":"13800138000"}"#,
        );
        assert_eq!(got, vec![("amount".into(), "wrong_type".into())]);
    }

    #[test]
    fn card_without_id_and_id_without_card() {
        let got = fields(
            r#"{"merchant_order_id":"A","amount":1,"currency":"CNY","phone":"13800138000","card_number":"6222000000000017"}"#,
        );
        assert_eq!(got, vec![("id_number".into(), "required".into())]);
        let got = fields(
            r#"{"merchant_order_id":"A","amount":1,"currency":"CNY","phone":"13800138000","id_number":"11010519491231002X"}"#,
        );
        assert_eq!(got, vec![("card_number".into(), "required".into())]);
    }

    #[test]
    fn a_field_given_twice_is_refused_not_last_wins() {
        let body = GOOD.replace("\"amount\":100,", "\"amount\":100,\"amount\":4999999,");
        assert!(matches!(
            parse(body.as_bytes(), 10_000_000),
            Err(ApiError::DuplicateField(f)) if f == "amount"
        ));
    }

    #[test]
    fn malformed_json_and_non_objects() {
        assert!(matches!(parse(b"{", 10), Err(ApiError::MalformedJson(_))));
        assert!(matches!(parse(b"[1]", 10), Err(ApiError::Validation(_))));
    }

    #[test]
    fn errors_never_echo_the_card_number() {
        let body = r#"{"merchant_order_id":"A","amount":1,"currency":"CNY","phone":"13800138000","card_number":"6222000000000018","id_number":"11010519491231002X"}"#;
        let Err(ApiError::Validation(f)) = parse(body.as_bytes(), 10) else {
            panic!()
        };
        assert!(!format!("{f:?}").contains("6222000000000018"));
    }
}
