//! The row key taken from a message: JSON pointers into the payload and/or
//! headers, one value per key column, as text. The same rule reads the
//! stream's messages and the DLQ's (which carry the original payload).

use crate::config::{KeyField, KeySource};

use super::account::{Key, KeyError};

/// Whether every key column comes from a header: then the reader asks
/// the server for headers only and never moves a payload.
pub fn headers_only(fields: &[KeyField]) -> bool {
    fields
        .iter()
        .all(|f| matches!(f.source, KeySource::Header(_)))
}

/// The key of one message; a value that is a string is taken as is, a
/// number or a boolean as its JSON text (so `2025` matches a column
/// holding 2025 once cast by PostgreSQL).
pub fn extract_key(
    fields: &[KeyField],
    payload: &[u8],
    headers: Option<&async_nats::HeaderMap>,
) -> Result<Key, KeyError> {
    let mut json: Option<serde_json::Value> = None;
    let mut key = Vec::with_capacity(fields.len());
    for f in fields {
        let value = match &f.source {
            KeySource::Header(name) => headers
                .and_then(|h| h.get(name.as_str()))
                .map(|v| v.as_str().to_string())
                .ok_or_else(|| KeyError::NoHeader(name.clone()))?,
            KeySource::Pointer(ptr) => {
                if json.is_none() {
                    json = Some(serde_json::from_slice(payload).map_err(|_| KeyError::NotJson)?);
                }
                let v = json.as_ref().and_then(|j| j.pointer(ptr));
                match v {
                    None | Some(serde_json::Value::Null) => {
                        return Err(KeyError::Missing(ptr.clone()))
                    }
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => {
                        v.to_string()
                    }
                    Some(_) => return Err(KeyError::NotScalar(ptr.clone())),
                }
            }
        };
        key.push(value);
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> Vec<KeyField> {
        vec![
            KeyField {
                column: "userId".into(),
                source: KeySource::Pointer("/payload/userId".into()),
            },
            KeyField {
                column: "date".into(),
                source: KeySource::Pointer("/payload/date".into()),
            },
        ]
    }

    #[test]
    fn the_seed_event_gives_user_and_date() {
        let body = br#"{"eventId":"e","payload":{"userId":"phase-b-final-test","date":"2025-10-02","rMSSD":62}}"#;
        assert_eq!(
            extract_key(&seed(), body, None),
            Ok(vec!["phase-b-final-test".into(), "2025-10-02".into()])
        );
        assert!(!headers_only(&seed()));
    }

    #[test]
    fn bad_payloads_say_why() {
        assert_eq!(
            extract_key(&seed(), b"not json", None),
            Err(KeyError::NotJson)
        );
        assert_eq!(
            extract_key(&seed(), br#"{"payload":{"date":"d"}}"#, None),
            Err(KeyError::Missing("/payload/userId".into()))
        );
        assert_eq!(
            extract_key(
                &seed(),
                br#"{"payload":{"userId":{"a":1},"date":"d"}}"#,
                None
            ),
            Err(KeyError::NotScalar("/payload/userId".into()))
        );
        assert_eq!(
            extract_key(&seed(), br#"{"payload":{"userId":7,"date":true}}"#, None),
            Ok(vec!["7".into(), "true".into()])
        );
    }

    #[test]
    fn headers_are_read_without_a_payload() {
        let fields = vec![KeyField {
            column: "id".into(),
            source: KeySource::Header("X-Id".into()),
        }];
        assert!(headers_only(&fields));
        let mut h = async_nats::HeaderMap::new();
        h.insert("X-Id", "42");
        assert_eq!(extract_key(&fields, b"", Some(&h)), Ok(vec!["42".into()]));
        assert_eq!(
            extract_key(&fields, b"", None),
            Err(KeyError::NoHeader("X-Id".into()))
        );
    }
}
