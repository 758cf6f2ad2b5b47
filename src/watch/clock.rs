//! Where the daemon's "now" comes from: the wall clock, or a manual one
//! that jumps forward, so tests run 48 h of soak in milliseconds.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// A boxed future, so the traits below stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where "now" comes from; tests use [`ManualClock`].
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
    /// Resolves at `t` (at once if `t` is past).
    fn sleep_until(&self, t: DateTime<Utc>) -> BoxFuture<'_, ()>;
    /// The same clock as an owned handle, for work that outlives a borrow
    /// (the rollback task stamps its outcome with it).
    fn handle(&self) -> Arc<dyn Clock>;
}

/// The wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
    fn sleep_until(&self, t: DateTime<Utc>) -> BoxFuture<'_, ()> {
        let d = (t - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        Box::pin(tokio::time::sleep(d))
    }
    fn handle(&self) -> Arc<dyn Clock> {
        Arc::new(SystemClock)
    }
}

/// Virtual time: sleeping jumps the clock forward, so hours pass instantly.
#[derive(Clone)]
pub struct ManualClock {
    now: Arc<StdMutex<DateTime<Utc>>>,
}

impl ManualClock {
    /// A clock that starts at `t`.
    pub fn new(t: DateTime<Utc>) -> Self {
        ManualClock {
            now: Arc::new(StdMutex::new(t)),
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        self.now.lock().map(|g| *g).unwrap_or_default()
    }
    fn sleep_until(&self, t: DateTime<Utc>) -> BoxFuture<'_, ()> {
        if let Ok(mut g) = self.now.lock() {
            if t > *g {
                *g = t;
            }
        }
        Box::pin(async {})
    }
    fn handle(&self) -> Arc<dyn Clock> {
        Arc::new(self.clone())
    }
}
