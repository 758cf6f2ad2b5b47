//! The soak: history of snapshots turned into spans, incidents, coverage and
//! a verdict over the whole soak; checkpoint reports and charts.

pub mod chart;
pub mod dlq_spike;
pub mod model;
pub mod record;
pub mod report;
pub mod store;
#[cfg(feature = "testkit")]
pub mod synthetic;
pub mod timeline;
