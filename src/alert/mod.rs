//! Alerts: lifecycle per criterion, a durable outbox, and the sinks that
//! deliver notifications (email, webhook, Slack, Alertmanager).

pub mod delivery;
pub mod engine;
pub mod model;
pub mod routes;
pub mod sink;
