//! The end-to-end suite: the real `soakwatch` binary, the daemon loop and
//! every sink against real NATS, PostgreSQL, HTTP, SMTP and Alertmanager
//! peers. One test binary, so the heavy dependencies (sqlx, reqwest, lettre,
//! axum) are linked once; one module per concern:
//!
//! - `check`: `soakwatch check` and `validate` against a replica, one test per fault.
//! - `edges`: a soak's first minute after T0 and its sign-off at T0 + duration, through the daemon.
//! - `watch`: the daemon binary (outages, restarts, rotation, write errors, locks).
//! - `soak`: 48 h replays and the daemon loop on a manual clock.
//! - `rollback`: the runbook's steps with real processes, triggers on the real daemon.
//! - `alert_sinks`: every sink against real receivers.
//! - `deadman`: the dead-man's switch pings (`[heartbeat]`) and the exported watchdog rules.
//! - `probes`: probes independent of each other; /metrics answers that are not an exposition.
//! - `delivery`: the daemon's alert delivery when a receiver hangs, and on stop.
//! - `ops`: running under systemd: the notify socket, the unit, sysusers and tmpfiles.
//! - `adoption`: a new team's own service: optional probes, paths, preflight.
//! - `testkit`: the replica's provisioning and the stand-in service themselves.
//! - `export`: the exported Prometheus rules and Grafana dashboard under promtool and a real Prometheus.
//! - `fleet`: many consumers per soak (named durables and selectors) with per-consumer ids.
//! - `ha`: the state on JetStream, the migration, two watchers on a 3-node cluster (failover, node loss, partition).
//! - `page`: the daemon's status page in a real headless Chromium.
//! - `redirects`: no Referer anywhere, notifications never follow a redirect, the metrics probe only within its origin.
//! - `signals`: SIGHUP, the state lock through a hard link, a full state disk.
//! - `no_panic`: closed stdout, edge values of every config key and subcommand: never exit 101.
//! - `totals`: a dead-lettered message counted once; whole-soak totals across service restarts; a stalled consumer.
//! - `ledger`: the per-message ledger on real NATS and PostgreSQL: one row dropped in hundreds named, DLQ, deletes, skips, advisories.
//! - `names`: counters by either spelling on real client-library output; the configured service's words.
//!
//! Needs the `testkit` feature (`./scripts/test.sh` passes it). Run one
//! module with `cargo test --features testkit --test e2e check::`.

mod common;

mod adoption;
mod alert_sinks;
mod check;
mod deadman;
mod delivery;
mod edges;
mod export;
mod fleet;
mod ha;
mod ledger;
mod names;
mod no_panic;
mod ops;
mod page;
mod probes;
mod redirects;
mod rollback;
mod signals;
mod soak;
mod testkit;
mod totals;
mod watch;
