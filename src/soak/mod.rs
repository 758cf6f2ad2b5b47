//! The soak: history of snapshots turned into spans, incidents, coverage and
//! a verdict over the whole soak, and its store.

pub mod dlq_spike;
pub mod jetstream;
pub mod lease;
pub mod migrate;
pub mod model;
pub mod policy;
pub mod record;
pub mod running;
pub mod series;
pub mod sqlite;
pub mod store;
pub mod timeline;
pub mod totals;
pub mod types;
