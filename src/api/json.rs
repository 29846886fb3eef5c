//! Strict JSON for request bodies, and the canonical form of a parsed body.
//!
//! `serde_json::Value` keeps the last of two equal keys, so
//! `{"amount":100,…,"amount":4999999}` would read as whatever a proxy, a log
//! or the merchant's own signer did not look at. A body is therefore read
//! with [`parse`], which refuses a key given twice in any object, however
//! deep (422 `duplicate_field`, naming the field by its path, e.g.
//! `card.number` or `items[2].sku`). RFC 8259 §4 leaves duplicate names'
//! meaning open; refusing them is the only reading every party agrees on.

use super::error::ApiError;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::cell::RefCell;
use std::fmt;

/// The request body axum read, or why it could not be read:
/// [`ApiError::PayloadTooLarge`] (413) over the body limit, else
/// [`ApiError::MalformedJson`] (400).
pub fn body(
    read: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<axum::body::Bytes, ApiError> {
    read.map_err(|r| match r.status() {
        axum::http::StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        _ => ApiError::MalformedJson("the body could not be read".into()),
    })
}

/// The members of a body that must be a JSON object: anything else is a
/// 422 `not_an_object` on the whole body.
pub fn object(value: Value) -> Result<Map<String, Value>, ApiError> {
    match value {
        Value::Object(obj) => Ok(obj),
        _ => Err(ApiError::Validation(vec![super::error::FieldError::new(
            "",
            "not_an_object",
            "the body must be a JSON object",
        )])),
    }
}

/// Parses a whole request body as one JSON value.
///
/// Errors: [`ApiError::MalformedJson`] (400, with line and column) for
/// anything that is not exactly one JSON value; [`ApiError::DuplicateField`]
/// (422) for an object with a key twice, named by its path.
pub fn parse(body: &[u8]) -> Result<Value, ApiError> {
    let duplicate = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = Strict {
        path: String::new(),
        duplicate: &duplicate,
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v));
    match (parsed, duplicate.into_inner()) {
        (_, Some(path)) => Err(ApiError::DuplicateField(path)),
        (Ok(v), None) => Ok(v),
        (Err(e), None) => Err(ApiError::MalformedJson(format!(
            "line {} column {}",
            e.line(),
            e.column()
        ))),
    }
}

/// The canonical bytes of a parsed body, for fingerprints: object keys
/// sorted (serde_json's map is ordered by key), no insignificant whitespace,
/// and top-level `null` members dropped, since the API reads a `null` field
/// as an absent one. Two bodies that mean the same request give the same
/// bytes whatever their key order or spacing.
pub fn canonical(value: &Value) -> Vec<u8> {
    let owned;
    let value = match value {
        Value::Object(obj) => {
            owned = Value::Object(
                obj.iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            );
            &owned
        }
        other => other,
    };
    serde_json::to_vec(value).expect("a Value always serializes")
}

/// A value at `path`; records the first duplicate key it meets.
struct Strict<'a> {
    path: String,
    duplicate: &'a RefCell<Option<String>>,
}

impl Strict<'_> {
    fn child(&self, path: String) -> Self {
        Strict {
            path,
            duplicate: self.duplicate,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        Ok(Number::from_f64(n).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) =
            seq.next_element_seed(self.child(format!("{}[{}]", self.path, out.len())))?
        {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.path)
            };
            if out.contains_key(&key) {
                *self.duplicate.borrow_mut() = Some(path);
                return Err(de::Error::custom("duplicate key"));
            }
            let value = map.next_value_seed(self.child(path))?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn duplicate(body: &str) -> String {
        match parse(body.as_bytes()) {
            Err(ApiError::DuplicateField(path)) => path,
            other => panic!("expected a duplicate for {body}, got {other:?}"),
        }
    }

    #[test]
    fn a_key_twice_is_named_by_its_path_at_any_depth() {
        assert_eq!(
            duplicate(r#"{"amount":100,"phone":"1","amount":4999999}"#),
            "amount"
        );
        assert_eq!(duplicate(r#"{"a":{"b":1,"b":2}}"#), "a.b");
        assert_eq!(duplicate(r#"{"a":[{"x":1},{"y":1,"y":1}]}"#), "a[1].y");
        assert_eq!(duplicate(r#"[[],{"k":{"k":1,"k":1}}]"#), "[1].k.k");
        // The same key in sibling objects is no duplicate.
        assert!(parse(br#"{"a":{"k":1},"b":{"k":1},"k":[{"k":1},{"k":2}]}"#).is_ok());
    }

    #[test]
    fn escaped_spellings_of_one_key_are_one_key() {
        assert_eq!(duplicate(r#"{"amount":1,"am\u006fu\u006et":2}"#), "amount");
    }

    #[test]
    fn values_come_out_as_serde_json_reads_them() {
        let body = br#" {"s":"x\n","n":-3,"u":18446744073709551615,"f":1.5,"t":true,"z":null,"a":[1,"2"]} "#;
        let strict = parse(body).unwrap();
        let plain: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(strict, plain);
    }

    #[test]
    fn malformed_and_trailing_input_is_malformed_json() {
        for body in [&b"{"[..], b"{} {}", b"", b"{\"a\":1,}", b"nul"] {
            assert!(
                matches!(parse(body), Err(ApiError::MalformedJson(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn canonical_bytes_ignore_key_order_spacing_and_nulls() {
        let a = parse(br#"{"b":1,"a":{"y":2,"x":[1, 2]},"c":null}"#).unwrap();
        let b = parse(b"{ \"a\" : {\"x\":[1,2],\n\"y\":2}, \"b\":1 }").unwrap();
        assert_eq!(canonical(&a), canonical(&b));
        assert_eq!(canonical(&a), br#"{"a":{"x":[1,2],"y":2},"b":1}"#.to_vec());
        let c = parse(br#"{"b":2,"a":{"y":2,"x":[1,2]}}"#).unwrap();
        assert_ne!(canonical(&a), canonical(&c));
    }
}
