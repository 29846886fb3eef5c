//! The merchant API while the database does not answer (the cells'
//! db-loss drill, issue #15): 503 `database_unavailable` with
//! `Retry-After`, nothing stored, and the same request answered once the
//! database is back.

use serde_json::Value;
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use voicepay_testkit::{order_body, spawn_app_with, Db};

/// A TCP proxy to `target` on a port of its own: `cut` closes the port and
/// every connection (as a stopped database server or a cut link does),
/// `restore` listens again on the same port.
struct Link {
    port: u16,
    target: String,
    tasks: Arc<Mutex<JoinSet<()>>>,
}

impl Link {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let link = Link {
            port,
            target,
            tasks: Arc::default(),
        };
        link.serve(listener);
        link
    }

    fn serve(&self, listener: TcpListener) {
        let (target, tasks) = (self.target.clone(), self.tasks.clone());
        let accept = async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                tasks.lock().unwrap().spawn(async move {
                    if let Ok(mut out) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
            }
        };
        self.tasks.lock().unwrap().spawn(accept);
    }

    fn cut(&self) {
        self.tasks.lock().unwrap().abort_all();
    }

    async fn restore(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        self.serve(listener);
    }
}

/// PostgreSQL only (`VOICEPAY_TEST_DATABASE_URL`; skipped without it,
/// except under `CI=true`): the daemon reaches its database through a
/// [`Link`] that is cut while an order is posted.
#[tokio::test]
async fn an_order_posted_while_the_database_is_away_is_refused_with_503_and_not_stored() {
    // The server of VOICEPAY_TEST_DATABASE_URL (postgres://user@host:port/db);
    // spawn_app_with skips or fails the test without it.
    let server = std::env::var("VOICEPAY_TEST_DATABASE_URL")
        .ok()
        .and_then(|u| Some(u.rsplit_once('@')?.1.split('/').next()?.to_owned()))
        .unwrap_or_else(|| "127.0.0.1:1".to_owned());
    let link = Link::start(server.clone()).await;
    let through = format!("127.0.0.1:{}", link.port);
    let Some(app) = spawn_app_with(Db::Postgres, move |s| {
        s.database.url = s.database.url.replacen(&server, &through, 1);
    })
    .await
    else {
        return;
    };

    link.cut();
    let body = order_body("DBOUT1");
    let res = app.create_order(&body).await;
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "5");
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["code"], "database_unavailable", "{v:#}");
    assert!(!v.to_string().contains("6222"), "{v:#}");

    link.restore().await;
    let stored: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM orders WHERE merchant_order_id = 'DBOUT1'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(stored, 0);
    // The database is back: the same request creates the order.
    let res = app.create_order(&body).await;
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
}
