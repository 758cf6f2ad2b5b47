//! Probes: the only code that talks to NATS, HTTP, PostgreSQL and files.
//!
//! [`Prober`] holds the clients (connected lazily, reconnected after a
//! failure) and [`Prober::snapshot`] runs every probe concurrently, each under
//! its own timeout, so one slow or dead dependency never hides the others.

pub mod db;
pub mod file;
pub mod lazy_roots;
pub mod log;
pub mod metrics;
pub mod nats;
pub mod service_env;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Instant;

use chrono::{DateTime, Utc};
use tokio::sync::Mutex;

use crate::config::Config;
use crate::sample::{
    ConsumerState, DbState, MetricsState, ProbeError, ProbeFailure, ProbeKind, Probed, Snapshot,
    StreamState,
};

/// Why the prober could not even be built (bad client settings).
#[derive(Debug, thiserror::Error)]
pub enum ProberError {
    /// The HTTP client could not be built (TLS set-up).
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// Clients for every probe, reused across rounds.
pub struct Prober {
    cfg: Config,
    http: reqwest::Client,
    pg: Result<Mutex<db::DbSession>, ProbeFailure>,
    nats: Mutex<Option<async_nats::Client>>,
    /// What the last answering metrics probe said about the process start
    /// (`None` before any answer). The database probe uses it at once instead
    /// of waiting for this round's metrics inside its own timeout.
    last_process_start: std::sync::Mutex<Option<Option<f64>>>,
    /// The log tail, kept across cycles so every line is read once.
    log_tail: std::sync::Arc<std::sync::Mutex<log::LogTail>>,
}

/// Runs a probe future under the probe timeout and records its wall time.
async fn timed<T>(
    kind: ProbeKind,
    label: String,
    timeout: std::time::Duration,
    fut: impl Future<Output = Probed<T>>,
) -> (String, u64, Probed<T>) {
    let start = Instant::now();
    let res = match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(ProbeFailure::new(
            kind,
            ProbeError::timeout(label.clone(), timeout),
        )),
    };
    (label, start.elapsed().as_millis() as u64, res)
}

impl Prober {
    /// Builds clients without connecting: a dead server fails its probe, not start-up.
    pub fn new(cfg: Config) -> Result<Prober, ProberError> {
        let http = metrics::http_client(cfg.probe_timeout)?;
        let pg = match &cfg.database {
            Some(d) => {
                db::connect_options(d, cfg.probe_timeout).map(|o| Mutex::new(db::DbSession::new(o)))
            }
            None => Err(ProbeFailure::not_configured(
                ProbeKind::Database,
                "database",
            )),
        };
        Ok(Prober {
            cfg,
            http,
            pg,
            nats: Mutex::new(None),
            last_process_start: std::sync::Mutex::new(None),
            log_tail: Default::default(),
        })
    }

    /// Continues the log tail from a stored snapshot (a restarted `watch`),
    /// so lines read before the restart are not read again and fallbacks
    /// seen before it stay counted.
    pub fn resume_log(&self, prev: &crate::sample::LogState) {
        let mut g = match self.log_tail.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        g.resume(prev);
    }

    /// Forgets what earlier rounds saw (the last process start) and starts
    /// the log tail where the log ends now, so the next round reads as a
    /// soak's first: the daemon's preflight probes before T0 without using
    /// up the soak's first lines, and no line from before T0 is judged.
    pub fn forget_rounds(&self) {
        let mut g = match self.log_tail.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *g = log::LogTail::from_now();
        drop(g);
        let mut s = match self.last_process_start.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *s = None;
    }

    /// The configuration the prober was built from.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// A connected NATS client, connecting (again) when needed; the error
    /// is what each NATS probe fails with this round.
    async fn nats_client(&self) -> Result<async_nats::Client, ProbeError> {
        let mut guard = self.nats.lock().await;
        if let Some(c) = guard.as_ref() {
            if c.connection_state() == async_nats::connection::State::Connected {
                return Ok(c.clone());
            }
            // A client that lost its server keeps retrying in the background;
            // a probe reports the outage instead of waiting for it.
            return Err(ProbeError::Disconnected {
                server: self.cfg.nats.url.shown().to_string(),
            });
        }
        let c = nats::connect(&self.cfg.nats, self.cfg.probe_timeout)
            .await
            .map_err(|e| e.0)?;
        *guard = Some(c.clone());
        Ok(c)
    }

    /// One round of every probe at `now`. `since` adds instants for which the
    /// database counts rows written after them (the window start of `check`).
    pub async fn snapshot(&self, now: DateTime<Utc>, since: &[DateTime<Utc>]) -> Snapshot {
        let cfg = &self.cfg;
        let timeout = cfg.probe_timeout;
        let (metrics_tx, metrics_rx) = tokio::sync::oneshot::channel::<Option<f64>>();
        let nats_part = self.nats_round();
        // The URL is in the reason whichever timeout fires first (the
        // client's own, equal to this one, or this one).
        let metrics_url = cfg.metrics.url.shown();
        let metrics_part = async {
            let (label, ms, res) = timed(
                ProbeKind::Metrics,
                "metrics".into(),
                timeout,
                self.metrics_round(metrics_tx),
            )
            .await;
            // The probe's own failures name the URL; this round's timeout
            // names only the label.
            let res = res.map_err(|mut f| {
                if let ProbeError::Timeout { what, .. } = &mut f.error {
                    *what = format!("GET {metrics_url}: {what}");
                }
                f
            });
            (label, ms, res)
        };
        let remembered = self.last_process_start.lock().ok().and_then(|g| *g);
        let db_part = self.db_round(now, since, remembered, metrics_rx);
        let log_part = timed(ProbeKind::Log, "log".into(), timeout, async {
            match &cfg.log {
                Some(l) => log::probe(self.log_tail.clone(), l, timeout).await,
                None => Err(ProbeFailure::not_configured(ProbeKind::Log, "log")),
            }
        });
        let env_part = timed(
            ProbeKind::ServiceEnv,
            "service_env".into(),
            timeout,
            async {
                match &cfg.service_env {
                    Some(e) => service_env::probe(e, timeout).await,
                    None => Err(ProbeFailure::not_configured(
                        ProbeKind::ServiceEnv,
                        "service_env",
                    )),
                }
            },
        );

        let ((streams, listings), metrics, db, log, env) =
            futures::join!(nats_part, metrics_part, db_part, log_part, env_part);

        let mut probe_ms = BTreeMap::new();
        let mut stream_map = BTreeMap::new();
        for (spec, (label, ms, res)) in cfg.streams.all().into_iter().zip(streams) {
            probe_ms.insert(label, ms);
            stream_map.insert(spec.name.clone(), res);
        }
        let mut consumers = BTreeMap::new();
        // One probe, the slowest listing's time (they run concurrently).
        for (name, (label, ms, listing)) in cfg.consumers.streams().into_iter().zip(listings) {
            let slowest = probe_ms.get(&label).copied().unwrap_or(0).max(ms);
            probe_ms.insert(label, slowest);
            consumers.insert(name.to_string(), listing);
        }
        let metrics = record(&mut probe_ms, metrics);
        let db = record(&mut probe_ms, db);
        let log = record(&mut probe_ms, log);
        let env = record(&mut probe_ms, env);
        Snapshot {
            taken_at: now,
            streams: stream_map,
            consumers,
            metrics,
            db,
            log,
            env,
            probe_ms,
            consumers_elided: false,
        }
    }

    /// The NATS probes on one (kept) client: every configured stream, and
    /// the consumer listing of every stream a watched consumer lives on.
    async fn nats_round(
        &self,
    ) -> (
        Vec<Timed<Option<StreamState>>>,
        Vec<Timed<Option<Vec<ConsumerState>>>>,
    ) {
        let cfg = &self.cfg;
        let timeout = cfg.probe_timeout;
        let client = self.nats_client().await;
        let js = client.map(async_nats::jetstream::new);
        let streams = futures::future::join_all(cfg.streams.all().into_iter().map(|spec| {
            let js = js.clone();
            let name = spec.name.clone();
            timed(
                ProbeKind::Stream,
                format!("stream {name}"),
                timeout,
                async move {
                    match js {
                        Ok(js) => nats::stream_state(&js, &name, timeout).await,
                        Err(e) => Err(ProbeFailure::new(ProbeKind::Stream, e)),
                    }
                },
            )
        }));
        let listings = futures::future::join_all(cfg.consumers.streams().into_iter().map(|name| {
            let js = js.clone();
            let name = name.to_string();
            timed(
                ProbeKind::Consumer,
                crate::sample::CONSUMER_PROBE.to_string(),
                timeout,
                async move {
                    match js {
                        Ok(js) => nats::consumer_listing(&js, &name, timeout).await,
                        Err(e) => Err(ProbeFailure::new(ProbeKind::Consumer, e)),
                    }
                },
            )
        }));
        futures::join!(streams, listings)
    }

    /// The metrics probe. Its process start time is sent to this round's
    /// database probe and, on an answer, remembered for the next rounds.
    async fn metrics_round(
        &self,
        process_start: tokio::sync::oneshot::Sender<Option<f64>>,
    ) -> Probed<MetricsState> {
        let r = metrics::probe(&self.http, &self.cfg).await;
        let start = r.as_ref().ok().and_then(|m| m.process_start);
        if r.is_ok() {
            if let Ok(mut g) = self.last_process_start.lock() {
                *g = Some(start);
            }
        }
        let _ = process_start.send(start);
        r
    }

    /// The database probe, counting rows since `since` and since the service
    /// started.
    ///
    /// The database counts rows since the service started, which only the
    /// metrics know. The connection and the catalog query do not need it and
    /// run at once, beside the metrics probe; the counts wait for this
    /// round's metrics outside the database's timeout: a quarter of the
    /// timeout when a start time is remembered from an earlier round (then
    /// used if the metrics are late), else (the first round, `check`) as long
    /// as the metrics probe may take. A hanging /metrics never times the
    /// database out; the two halves share one timeout.
    async fn db_round(
        &self,
        now: DateTime<Utc>,
        since: &[DateTime<Utc>],
        remembered: Option<Option<f64>>,
        metrics_start: tokio::sync::oneshot::Receiver<Option<f64>>,
    ) -> Timed<DbState> {
        let cfg = &self.cfg;
        let timeout = cfg.probe_timeout;
        let label = || "database".to_string();
        let (session, d) = match (self.pg.as_ref(), cfg.database.as_ref()) {
            (Ok(s), Some(d)) => (s, d),
            (Err(e), _) => return (label(), 0, Err(e.clone())),
            (Ok(_), None) => {
                let f = ProbeFailure::not_configured(ProbeKind::Database, "database");
                return (label(), 0, Err(f));
            }
        };
        let mut session = session.lock().await;
        let (_, first_ms, prepared) =
            timed(ProbeKind::Database, label(), timeout, session.prepare(d)).await;
        let prepared = match prepared {
            Ok(p) => p,
            Err(e) => return (label(), first_ms, Err(e)),
        };
        let process_start = self.process_start(remembered, metrics_start).await;
        let mut instants: Vec<DateTime<Utc>> = since.to_vec();
        if let Some(ps) =
            process_start.and_then(|s| DateTime::from_timestamp_micros((s * 1e6) as i64))
        {
            instants.push(ps);
        }
        let left = timeout.saturating_sub(std::time::Duration::from_millis(first_ms));
        let (label, ms, res) = timed(
            ProbeKind::Database,
            label(),
            left,
            session.finish(prepared, d, now, &instants),
        )
        .await;
        let res = res.map_err(|mut f| {
            // The reason names the whole probe's timeout, not what was left of it.
            if let ProbeError::Timeout { after, .. } = &mut f.error {
                *after = timeout;
            }
            f
        });
        (label, first_ms + ms, res)
    }

    /// This round's process start time from the metrics probe (see
    /// [`Prober::db_round`] for how long it is waited for).
    async fn process_start(
        &self,
        remembered: Option<Option<f64>>,
        metrics_start: tokio::sync::oneshot::Receiver<Option<f64>>,
    ) -> Option<f64> {
        let timeout = self.cfg.probe_timeout;
        match remembered {
            // This round's value if the metrics answer soon (a restart
            // changes it), else the remembered one.
            Some(ps) => match tokio::time::timeout(timeout / 4, metrics_start).await {
                Ok(Ok(now)) => now.or(ps),
                _ => ps,
            },
            None => match metrics_start.await {
                Ok(ps) => ps,
                // The metrics probe timed out: do not wait for it again
                // until it answers.
                Err(_) => {
                    if let Ok(mut g) = self.last_process_start.lock() {
                        g.get_or_insert(None);
                    }
                    None
                }
            },
        }
    }
}

/// A probe's label, how long it took (ms) and its outcome, as [`timed`] gives them.
type Timed<T> = (String, u64, Probed<T>);

/// Files a probe's timing under its label and returns its outcome.
fn record<T>(
    probe_ms: &mut BTreeMap<String, u64>,
    (label, ms, res): (String, u64, Probed<T>),
) -> Probed<T> {
    probe_ms.insert(label, ms);
    res
}
