//! The demo page as a browser uses it, without a browser: [`TestApp::demo`]
//! opens `/demo` on the demo's own listener and keeps the session cookie the
//! page sets, as Chromium would; each [`DemoSession`] is another browser.

use crate::app::TestApp;
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;

/// One browser session on the demo page: its listener and its cookie.
pub struct DemoSession {
    /// `http://127.0.0.1:PORT` of the demo listener.
    pub base: String,
    /// `vp_demo_session=…`, as the page set it.
    pub cookie: String,
    /// The `Set-Cookie` header the page answered with, whole.
    pub set_cookie: String,
    http: reqwest::Client,
}

impl TestApp {
    /// The demo listener's URL for `path`; panics when the demo is off.
    pub fn demo_url(&self, path: &str) -> String {
        let base = self.demo_base.as_deref().expect("demo.enabled");
        format!("{base}{path}")
    }

    /// A new browser session: `GET /demo`, keeping the cookie it sets.
    pub async fn demo(&self) -> DemoSession {
        let res = self
            .http
            .get(self.demo_url("/demo"))
            .send()
            .await
            .expect("GET /demo");
        assert_eq!(res.status(), 200, "the demo page");
        let set_cookie = res
            .headers()
            .get("set-cookie")
            .expect("the page sets a session cookie")
            .to_str()
            .expect("ASCII cookie")
            .to_string();
        let cookie = set_cookie
            .split(';')
            .next()
            .expect("name=value")
            .to_string();
        DemoSession {
            base: self.demo_base.clone().expect("demo.enabled"),
            cookie,
            set_cookie,
            http: self.http.clone(),
        }
    }
}

impl DemoSession {
    /// A request to the demo listener carrying this session's cookie.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
    }

    /// `POST /demo/api/orders` with a JSON body, as the page sends it.
    pub async fn place(&self, body: &Value) -> Response {
        self.request(Method::POST, "/demo/api/orders")
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// `GET path` in this session.
    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path)
            .send()
            .await
            .expect("request sent")
    }
}
