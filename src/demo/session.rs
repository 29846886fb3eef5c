//! The browser session the demo ties its orders to, and the check that
//! keeps other sites from making a browser call the demo.
//!
//! A session is a random id in an `HttpOnly`, `SameSite=Strict` cookie that
//! the page sets. Nothing about it is stored: each order the session places
//! carries, in its `merchant_order_id`, a tag derived from the id with the
//! fingerprint key (`D` + 16 hex digits + 12 random ones), so an order is
//! the session's when its reference starts with the session's tag. That
//! holds across restarts and nodes, and a tag seen in an order view does
//! not give the cookie away.

use crate::api::ApiError;
use crate::crypto::{random_hex, Vault};
use axum::http::{header, HeaderMap, HeaderValue};
use cookie::{Cookie, SameSite};

/// The session cookie's name.
pub const COOKIE: &str = "vp_demo_session";

/// Hex digits of a session id (128 random bits).
const ID_LEN: usize = 32;

/// Hex digits of the tag in a session's order references.
const TAG_LEN: usize = 16;

/// A browser session of the demo page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// `D` + the tag: how this session's order references start.
    prefix: String,
}

impl Session {
    /// The session named by the request's cookie, when it has a
    /// well-formed one (32 lowercase hex digits).
    pub fn from_headers(headers: &HeaderMap, vault: &Vault) -> Option<Self> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(Cookie::split_parse)
            .filter_map(Result::ok)
            .find(|c| c.name() == COOKIE && well_formed(c.value()))
            .map(|c| Self::of(c.value(), vault))
    }

    /// A new session id and the `Set-Cookie` value that gives it to the
    /// browser: `HttpOnly` (no script reads it), `SameSite=Strict` (no other
    /// site's request carries it), `Path=/demo`, gone with the browser.
    pub fn issue() -> HeaderValue {
        let cookie = Cookie::build((COOKIE, random_hex(ID_LEN / 2)))
            .http_only(true)
            .same_site(SameSite::Strict)
            .path("/demo")
            .build();
        HeaderValue::from_str(&cookie.to_string())
            .expect("a cookie of hex digits is a header value")
    }

    fn of(id: &str, vault: &Vault) -> Self {
        let tag = &vault.fingerprint("demo_session", id)[..TAG_LEN];
        Self {
            prefix: format!("D{tag}"),
        }
    }

    /// How this session's order references start (letters and digits).
    pub fn reference_prefix(&self) -> &str {
        &self.prefix
    }

    /// A fresh `merchant_order_id` for an order of this session (29
    /// letters and digits).
    pub fn new_reference(&self) -> String {
        format!("{}{}", self.prefix, random_hex(6))
    }

    /// Whether the order with this `merchant_order_id` is this session's.
    pub fn owns(&self, merchant_order_id: &str) -> bool {
        merchant_order_id.len() == self.prefix.len() + 12
            && merchant_order_id.starts_with(&self.prefix)
    }
}

fn well_formed(id: &str) -> bool {
    id.len() == ID_LEN && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Refuses (403 `cross_site_request`) a request that another site made the
/// browser send: a `Sec-Fetch-Site` other than `same-origin` or `none`, or
/// an `Origin` that is not this very host. Requests without either header
/// (curl, older browsers) pass: the JSON-only body and the `SameSite=Strict`
/// session cookie still stand in the way of a cross-site form.
pub fn same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let refuse = || {
        Err(ApiError::Forbidden {
            code: "cross_site_request",
            message: "the demo answers only its own page".into(),
        })
    };
    let text = |name: header::HeaderName| headers.get(name).map(|v| v.to_str().unwrap_or("\u{0}"));
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site")) {
        if !matches!(site, "same-origin" | "none") {
            return refuse();
        }
    }
    if let Some(origin) = text(header::ORIGIN) {
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        let host = text(header::HOST);
        if authority.is_none() || authority != host {
            return refuse();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn vault() -> Vault {
        Vault::new(&crate::crypto::KeyRing::for_tests())
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_names_a_session() {
        let set = Session::issue();
        let set = set.to_str().unwrap();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        assert!(set.contains("Path=/demo"), "{set}");
        let pair = set.split(';').next().unwrap();
        let v = vault();
        let s = Session::from_headers(&headers(&[("cookie", &format!("a=b; {pair}"))]), &v)
            .expect("session");
        let again = Session::from_headers(&headers(&[("cookie", pair)]), &v).unwrap();
        assert_eq!(s, again, "the same cookie is the same session");
        let other = Session::issue();
        let other = other.to_str().unwrap().split(';').next().unwrap();
        assert_ne!(
            Session::from_headers(&headers(&[("cookie", other)]), &v).unwrap(),
            s
        );
        for bad in [
            "vp_demo_session=",
            "vp_demo_session=XYZ",
            "other=0123456789abcdef0123456789abcdef",
        ] {
            assert!(
                Session::from_headers(&headers(&[("cookie", bad)]), &v).is_none(),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_session_owns_only_its_references() {
        let v = vault();
        let a = Session::of(&"a".repeat(32), &v);
        let b = Session::of(&"b".repeat(32), &v);
        let r = a.new_reference();
        assert_eq!(r.len(), 29);
        assert!(r.bytes().all(|c| c.is_ascii_alphanumeric()), "{r}");
        assert!(a.owns(&r) && !b.owns(&r));
        assert!(
            !a.owns(a.reference_prefix()),
            "a bare prefix is no order of it"
        );
    }

    #[test]
    fn other_sites_are_refused() {
        let ok = [
            vec![],
            vec![("sec-fetch-site", "same-origin")],
            vec![("sec-fetch-site", "none")],
            vec![
                ("origin", "http://127.0.0.1:8081"),
                ("host", "127.0.0.1:8081"),
            ],
        ];
        for h in ok {
            assert!(same_origin(&headers(&h)).is_ok(), "{h:?}");
        }
        let refused = [
            vec![("sec-fetch-site", "cross-site")],
            vec![("sec-fetch-site", "same-site")],
            vec![
                ("origin", "http://evil.example"),
                ("host", "127.0.0.1:8081"),
            ],
            vec![("origin", "null"), ("host", "127.0.0.1:8081")],
            vec![("origin", "http://127.0.0.1:8081")],
        ];
        for h in refused {
            let err = same_origin(&headers(&h)).unwrap_err();
            assert!(
                matches!(
                    err,
                    ApiError::Forbidden {
                        code: "cross_site_request",
                        ..
                    }
                ),
                "{h:?}"
            );
        }
    }
}
