//! Waiting on a condition instead of sleeping for a guessed time: a test
//! that waits for what it needs is as fast as the machine allows and does
//! not break when the machine is slow.
//!
//! ```text
//! let v = wait_for(Duration::from_secs(15), async || {
//!     let v = app.order_view(&id).await;
//!     if v["status"] == "failed" { Ok(v) } else { Err(format!("never failed: {v:#}")) }
//! })
//! .await;
//! ```
//!
//! A sleep stays only where time passing is the point (proving that
//! nothing happens meanwhile, or pacing a scripted caller), with a comment
//! saying so.

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

/// How long [`wait_for`] sleeps between two looks.
pub const EVERY: Duration = Duration::from_millis(50);

/// Polls `check` every [`EVERY`] until it gives `Ok`, and returns that
/// value. After `within`, the test fails with the last `Err`, which should
/// say what was awaited and what was seen instead.
pub async fn wait_for<T, E, F, Fut>(within: Duration, check: F) -> T
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    match poll_until(within, EVERY, check).await {
        Ok(v) => v,
        Err(why) => panic!("{why}"),
    }
}

/// [`wait_for`] a yes-or-no condition: after `within`, the test fails
/// with `failure`.
pub async fn wait_until<F, Fut>(within: Duration, failure: impl Display, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let failure = &failure;
    wait_for(within, || {
        let holds = check();
        async move { holds.await.then_some(()).ok_or(failure) }
    })
    .await
}

/// Polls `check` every `every` until it gives `Ok`; after `within`, returns
/// its last `Err` (for helpers that return errors, or that look around
/// before failing).
///
/// `check` is a closure that returns a future (`|| async { … }`, or an
/// `async || { … }` that only reads what it captures), not any async
/// closure: so a task that waits stays `Send` and can be spawned.
pub async fn poll_until<T, E, F, Fut>(
    within: Duration,
    every: Duration,
    mut check: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + within;
    loop {
        match check().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(every).await,
        }
    }
}

/// [`wait_for`] a probe that gives `Some` once the awaited thing is there;
/// after `within`, the test fails with "gave up waiting for {what}".
pub async fn wait_some<T, F, Fut>(within: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_for(within, || {
        let found = probe();
        async move {
            found
                .await
                .ok_or_else(|| format!("gave up waiting for {what}"))
        }
    })
    .await
}
