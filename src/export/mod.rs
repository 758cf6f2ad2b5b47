//! `soakwatch export`: the soak's criteria in other tools' terms, so a
//! Prometheus and a Grafana that already watch the service can watch the
//! soak too.
//!
//! - [`rules`]: Prometheus alerting rules equivalent to the criteria, with
//!   the thresholds and `for` holds of checks.toml and the labels of
//!   soakwatch's own alerts.
//! - [`grafana`]: a dashboard with the charts of the reports, on Prometheus
//!   queries.
//!
//! Both are pure functions of a validated [`Config`](crate::config::Config)
//! to text; the CLI writes that text. Both write JSON: JSON is valid YAML
//! 1.2, Prometheus and promtool read rule files as YAML and accept it, and
//! serde_json escapes every string correctly, where a hand-written YAML
//! emitter would have to get YAML's quoting rules right for names taken
//! from a config file.

pub mod grafana;
mod promql;
pub mod rules;

/// Why a config cannot be exported (the config itself is valid for soakwatch).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    /// A name soakwatch matches as text but PromQL cannot express as a
    /// label or metric name.
    #[error("{key}: `{name}` is not a valid Prometheus {kind} name, so it cannot be queried")]
    InvalidName {
        /// Dotted config key of the name.
        key: String,
        /// The name as configured.
        name: String,
        /// `label` or `metric`.
        kind: &'static str,
    },
}
