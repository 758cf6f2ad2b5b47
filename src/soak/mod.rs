//! The soak: history of snapshots turned into spans, incidents, coverage and
//! a verdict over the whole soak; pure (where it is stored is
//! [`crate::state`]).

pub mod dlq_spike;
pub mod model;
pub mod policy;
pub mod record;
pub mod running;
pub mod series;
pub mod timeline;
pub mod totals;
