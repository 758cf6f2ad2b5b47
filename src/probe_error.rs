//! What a probe failure is, as a type: [`ProbeError`].
//!
//! A probe that cannot produce its sample says why with one of these
//! variants. Callers that decide something (a probe not configured is not a
//! failure; a body over the cap is `unknown`, not `down`) match on the
//! variant; people read its one-line `Display`, which is the text soakwatch
//! has always shown (URLs are redacted before they get here, so no variant
//! holds a secret).
//!
//! Snapshots are stored with their failures, so the variants are also a
//! stored format: [`ProbeError::from_recorded`] reads the text-only reason of
//! history written before this type existed.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Names the cap in the text of a refused body (kept in the text so a
/// person knows which setting to raise; read back from old records only).
pub const OVER_CAP_MARK: &str = "[metrics] max_body_bytes";

/// Names a successful answer that is not an exposition in its text (read
/// back from old records only).
pub const NOT_EXPOSITION_MARK: &str = "not a Prometheus exposition";

/// Why a probe produced no sample. `Display` is the one line shown in every
/// output and kept in stored history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum ProbeError {
    /// The probe's section is not in the config, so it did not run: its
    /// criteria are `not_configured`, never `unknown`.
    #[error("not configured: no [{section}] section in the config")]
    NotConfigured {
        /// The missing section, without brackets (`database`).
        section: String,
    },
    /// Nothing answered within the probe's deadline.
    #[error("{what}: no answer within {}", humantime::format_duration(*after))]
    Timeout {
        /// What was waited for (`stream ORDERS`, `GET http://…: metrics`).
        what: String,
        /// How long it was waited for.
        after: Duration,
    },
    /// A file was not read and parsed within the probe's deadline (a slow
    /// disk or a huge file; the runtime was never blocked meanwhile).
    #[error("{what}: not read and parsed within {}", humantime::format_duration(*after))]
    NotReadInTime {
        /// The file (`env file /etc/svc.env`).
        what: String,
        /// How long it was given.
        after: Duration,
    },
    /// No connection could be made (refused, unreachable, TLS, auth).
    #[error("{what}: {detail}")]
    Connect {
        /// What was connected to (`cannot connect to NATS at …`, `database …`).
        what: String,
        /// What the client library said, one line.
        detail: String,
    },
    /// The kept NATS client lost its server; it reconnects in the background
    /// and the probe reports the outage instead of waiting for it.
    #[error("NATS at {server} is disconnected (reconnecting)")]
    Disconnected {
        /// The server URL as shown (redacted).
        server: String,
    },
    /// A configured URL does not parse.
    #[error("bad {service} url {url}")]
    BadUrl {
        /// Whose URL (`NATS`).
        service: String,
        /// The URL as shown (redacted).
        url: String,
    },
    /// The service answered with a body larger than `[metrics]
    /// max_body_bytes`: it is up, but its answer was not read.
    #[error("GET {url}: body {body} is over the cap of {cap} bytes ({OVER_CAP_MARK})")]
    OverCap {
        /// The metrics URL as shown.
        url: String,
        /// How the size was learnt.
        body: OverCapBody,
        /// The cap, bytes.
        cap: u64,
    },
    /// The endpoint answered with success, but with something that is not a
    /// Prometheus exposition (a login page, an empty body): not down.
    #[error("GET {url}: HTTP {status} but {NOT_EXPOSITION_MARK} ({detail})")]
    NotExposition {
        /// The metrics URL as shown.
        url: String,
        /// The HTTP status as shown (`200 OK`).
        status: String,
        /// Content type, size and first bad line.
        detail: String,
    },
    /// The endpoint answered with an error status.
    #[error("GET {url}: HTTP {status}")]
    HttpStatus {
        /// The metrics URL as shown.
        url: String,
        /// The HTTP status as shown (`503 Service Unavailable`).
        status: String,
    },
    /// A redirect with no Location to follow.
    #[error("GET {url}: HTTP {status} without a Location")]
    RedirectWithoutLocation {
        /// The metrics URL as shown.
        url: String,
        /// The HTTP status as shown.
        status: String,
    },
    /// A redirect that was not followed.
    #[error("GET {url}: HTTP {status} to {to}: {why}")]
    RedirectRefused {
        /// The metrics URL as shown.
        url: String,
        /// The HTTP status as shown.
        status: String,
        /// The Location, without credentials.
        to: String,
        /// Why it was not followed.
        why: RedirectRefusal,
    },
    /// The watched table is not in the database.
    #[error("table {table} does not exist in the database")]
    MissingTable {
        /// The table as configured.
        table: String,
    },
    /// A configured column is not in the table.
    #[error("table {table} has no column {column}")]
    MissingColumn {
        /// The table as configured.
        table: String,
        /// The missing column.
        column: String,
    },
    /// A write column that is not a timestamp.
    #[error("column {table}.{column} is {found}, not a timestamp")]
    NotTimestamp {
        /// The table as configured.
        table: String,
        /// The column.
        column: String,
        /// Its type as PostgreSQL names it.
        found: String,
    },
    /// Nothing at a file's path.
    #[error("{file} does not exist")]
    MissingFile {
        /// Which file and its path (`log file /var/log/svc.log`).
        file: String,
    },
    /// A FIFO, a directory, a device…: never opened or read.
    #[error("{file} is {kind}, not a regular file")]
    NotRegularFile {
        /// Which file and its path.
        file: String,
        /// What it is (`a FIFO`).
        kind: String,
    },
    /// A file larger than the probe reads.
    #[error("{file} is {size} bytes, more than the {max} read")]
    FileTooLarge {
        /// Which file and its path.
        file: String,
        /// Its size, bytes.
        size: u64,
        /// The most read, bytes.
        max: u64,
    },
    /// A sample that holds no such probe outcome (a stream added to the
    /// config after the sample was taken).
    #[error("{what} was not probed")]
    NotProbed {
        /// What is missing from the sample (`stream`).
        what: String,
    },
    /// No sample was taken at all (a placeholder that is never shown).
    #[error("not sampled")]
    NotSampled,
    /// An older stored sample whose consumer listings were dropped to keep
    /// history small.
    #[error("consumer listings are kept for the newest sample only")]
    ListingNotKept,
    /// A step failed with a lower library's (or the server's) words.
    #[error("{what}: {detail}")]
    Failed {
        /// What was tried (`stream ORDERS`, `querying orders`).
        what: String,
        /// What went wrong, one line.
        detail: String,
    },
    /// Only text is known: a failure recorded before failures had types.
    #[error("{0}")]
    Other(String),
}

/// How an over-cap body's size was learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverCapBody {
    /// The declared Content-Length, bytes (nothing was read).
    ContentLength(u64),
    /// Bytes read when the cap was passed (no or a false Content-Length).
    ReadMoreThan(u64),
}

impl std::fmt::Display for OverCapBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OverCapBody::ContentLength(n) => write!(f, "of {n} bytes (Content-Length)"),
            OverCapBody::ReadMoreThan(n) => write!(f, "(more than {n} bytes read)"),
        }
    }
}

/// Why a redirect of the metrics endpoint was not followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedirectRefusal {
    /// It leads to another scheme, host or port.
    OtherOrigin,
    /// More hops than [`crate::http_client::MAX_HOPS`].
    TooMany,
}

impl std::fmt::Display for RedirectRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RedirectRefusal::OtherOrigin => {
                "a redirect to another origin is not followed (only within the metrics URL's own scheme, host and port)"
            }
            RedirectRefusal::TooMany => "too many redirects",
        })
    }
}

impl ProbeError {
    /// The probe's section `section` is not in the config.
    pub fn not_configured(section: &str) -> Self {
        ProbeError::NotConfigured {
            section: section.to_string(),
        }
    }

    /// `what` gave no answer within `after`.
    pub fn timeout(what: impl Into<String>, after: Duration) -> Self {
        ProbeError::Timeout {
            what: what.into(),
            after,
        }
    }

    /// `what` failed; `detail` is the lower library's (or server's) words.
    pub fn failed(what: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        ProbeError::Failed {
            what: what.into(),
            detail: detail.to_string(),
        }
    }

    /// The variant of a reason recorded as text only (history written before
    /// failures had types). The kinds a decision depends on (not configured,
    /// over the cap, not an exposition) and timeouts are recognised when the
    /// text reads back exactly; anything else is [`ProbeError::Other`].
    pub fn from_recorded(reason: &str) -> Self {
        let typed = recorded_not_configured(reason)
            .or_else(|| recorded_over_cap(reason))
            .or_else(|| recorded_not_exposition(reason))
            .or_else(|| recorded_timeout(reason))
            .or_else(|| recorded_not_read_in_time(reason));
        match typed {
            // Only a parse that gives the very same text back is trusted.
            Some(e) if e.to_string() == reason => e,
            _ => ProbeError::Other(reason.to_string()),
        }
    }
}

fn recorded_not_configured(reason: &str) -> Option<ProbeError> {
    let section = reason
        .strip_prefix("not configured: no [")?
        .strip_suffix("] section in the config")?;
    Some(ProbeError::not_configured(section))
}

fn recorded_over_cap(reason: &str) -> Option<ProbeError> {
    let rest = reason.strip_prefix("GET ")?;
    let (url, rest) = rest.split_once(": body ")?;
    let (body, rest) = rest.split_once(" is over the cap of ")?;
    let cap = rest.strip_suffix(&format!(" bytes ({OVER_CAP_MARK})"))?;
    let body = if let Some(n) = body
        .strip_prefix("of ")
        .and_then(|b| b.strip_suffix(" bytes (Content-Length)"))
    {
        OverCapBody::ContentLength(n.parse().ok()?)
    } else {
        let n = body
            .strip_prefix("(more than ")?
            .strip_suffix(" bytes read)")?;
        OverCapBody::ReadMoreThan(n.parse().ok()?)
    };
    Some(ProbeError::OverCap {
        url: url.to_string(),
        body,
        cap: cap.parse().ok()?,
    })
}

fn recorded_not_exposition(reason: &str) -> Option<ProbeError> {
    let rest = reason.strip_prefix("GET ")?;
    let (url, rest) = rest.split_once(": HTTP ")?;
    let (status, rest) = rest.split_once(&format!(" but {NOT_EXPOSITION_MARK} ("))?;
    Some(ProbeError::NotExposition {
        url: url.to_string(),
        status: status.to_string(),
        detail: rest.strip_suffix(')')?.to_string(),
    })
}

fn recorded_timeout(reason: &str) -> Option<ProbeError> {
    let (what, after) = reason.rsplit_once(": no answer within ")?;
    let after = humantime::parse_duration(after).ok()?;
    Some(ProbeError::timeout(what, after))
}

fn recorded_not_read_in_time(reason: &str) -> Option<ProbeError> {
    let (what, after) = reason.rsplit_once(": not read and parsed within ")?;
    Some(ProbeError::NotReadInTime {
        what: what.to_string(),
        after: humantime::parse_duration(after).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_reads_as_the_text_soakwatch_always_showed() {
        let cases = [
            (
                ProbeError::not_configured("database"),
                "not configured: no [database] section in the config",
            ),
            (
                ProbeError::timeout("stream ORDERS", Duration::from_secs(5)),
                "stream ORDERS: no answer within 5s",
            ),
            (
                ProbeError::OverCap {
                    url: "http://h:9/metrics".into(),
                    body: OverCapBody::ContentLength(9),
                    cap: 1,
                },
                "GET http://h:9/metrics: body of 9 bytes (Content-Length) is over the cap of 1 bytes ([metrics] max_body_bytes)",
            ),
            (
                ProbeError::OverCap {
                    url: "http://h:9/metrics".into(),
                    body: OverCapBody::ReadMoreThan(70),
                    cap: 64,
                },
                "GET http://h:9/metrics: body (more than 70 bytes read) is over the cap of 64 bytes ([metrics] max_body_bytes)",
            ),
            (
                ProbeError::NotExposition {
                    url: "http://h:9/metrics".into(),
                    status: "200 OK".into(),
                    detail: "text/html, 90 bytes, 2 bad lines".into(),
                },
                "GET http://h:9/metrics: HTTP 200 OK but not a Prometheus exposition (text/html, 90 bytes, 2 bad lines)",
            ),
            (
                ProbeError::NotReadInTime {
                    what: "env file /e".into(),
                    after: Duration::from_millis(1500),
                },
                "env file /e: not read and parsed within 1s 500ms",
            ),
        ];
        for (e, text) in cases {
            assert_eq!(e.to_string(), text);
            // And an old record of that text reads back as the same variant.
            assert_eq!(ProbeError::from_recorded(text), e, "{text}");
        }
    }

    #[test]
    fn an_old_reason_that_does_not_read_back_exactly_is_other() {
        for text in [
            "GET x: connection failed: refused",
            "not configured: no [database] section",
            "GET x: body of many bytes (Content-Length) is over the cap of 1 bytes ([metrics] max_body_bytes)",
            "stream S: no answer within soon",
        ] {
            assert_eq!(
                ProbeError::from_recorded(text),
                ProbeError::Other(text.to_string())
            );
        }
    }

    #[test]
    fn every_shape_of_variant_survives_the_store_encodings() {
        let all = [
            ProbeError::ListingNotKept,
            ProbeError::Other("text".into()),
            ProbeError::timeout("stream S", Duration::from_millis(2500)),
            ProbeError::OverCap {
                url: "u".into(),
                body: OverCapBody::ReadMoreThan(3),
                cap: 2,
            },
            ProbeError::RedirectRefused {
                url: "u".into(),
                status: "302 Found".into(),
                to: "http://elsewhere/".into(),
                why: RedirectRefusal::OtherOrigin,
            },
        ];
        for e in all {
            let bytes = rmp_serde::to_vec_named(&e).expect("encode");
            let back: ProbeError = rmp_serde::from_slice(&bytes).expect("msgpack");
            assert_eq!(back, e);
            let json = serde_json::to_string(&e).expect("json");
            let back: ProbeError = serde_json::from_str(&json).expect("json back");
            assert_eq!(back, e);
        }
    }
}
