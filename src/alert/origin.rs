//! Where an alert came from ([`Origin`]), typed, with the reason label and the stored form
//! derived from it: nothing reads a reason string to learn an origin.

use serde::{Deserialize, Serialize};

use crate::detect::Detector;

/// Where an alert came from. The alert's `reason` label and its dedup key are derived from
/// this, never the other way round: nothing reads a reason string to learn an alert's origin.
///
/// Stored and served as `{"type": "run"}`, `{"type": "signature", "id": …}`, or as the
/// detector's label with what tells its alerts apart: `{"type": "trend", "signal": "rss"}`,
/// `{"type": "burn", "severity": "page"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The probe's own runs failed `after` times in a row (`alert:`). A probe has at most one
    /// such alert at a time, whatever its failure reason.
    Run,
    /// A detector's verdict on a signal: `key` is the signal, or the severity for a detector
    /// whose alerts are told apart by severity (burn rate).
    Detected { detector: Detector, key: String },
    /// A log probe met an error signature it had never seen (`new_signature:`).
    Signature { id: String },
    /// Opened by hand (`slowburn page`, `POST /api/v1/incidents`) for a service; `id` tells
    /// such incidents apart.
    Manual { id: String },
}

impl Origin {
    /// The origin of a detector's verdict.
    pub fn of_verdict(verdict: &crate::detect::Verdict) -> Origin {
        Origin::Detected {
            detector: verdict.detector,
            key: verdict.detector.key(&verdict.signal, verdict.severity),
        }
    }

    /// The origin of `detector`'s alert on `signal` (or of that severity, for burn rate).
    pub fn detected(detector: Detector, key: &str) -> Origin {
        Origin::Detected {
            detector,
            key: key.to_string(),
        }
    }

    /// The stable reason label of a detector's alert (`drift:rss`, `change:latency`,
    /// `change_down:orders`, `burn:page`); a run alert's reason is its failure's (`status`,
    /// `timeout`, …).
    pub fn detector_reason(&self) -> Option<String> {
        match self {
            Origin::Run => None,
            Origin::Detected { detector, key } => Some(format!("{}:{key}", detector.info().reason)),
            Origin::Signature { id } => Some(format!("signature:{id}")),
            Origin::Manual { id } => Some(format!("manual:{id}")),
        }
    }
}

impl Serialize for Origin {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        match self {
            Origin::Run => map.serialize_entry("type", "run")?,
            Origin::Signature { id } => {
                map.serialize_entry("type", "signature")?;
                map.serialize_entry("id", id)?;
            }
            Origin::Manual { id } => {
                map.serialize_entry("type", "manual")?;
                map.serialize_entry("id", id)?;
            }
            Origin::Detected { detector, key } => {
                map.serialize_entry("type", detector.as_str())?;
                let field = if detector.info().per_severity {
                    "severity"
                } else {
                    "signal"
                };
                map.serialize_entry(field, key)?;
            }
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Origin {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Origin, D::Error> {
        use serde::de::Error;
        #[derive(Deserialize)]
        struct Stored {
            #[serde(rename = "type")]
            kind: String,
            signal: Option<String>,
            severity: Option<String>,
            id: Option<String>,
        }
        let stored = Stored::deserialize(deserializer)?;
        match stored.kind.as_str() {
            "run" => return Ok(Origin::Run),
            "signature" => {
                let id = stored.id.ok_or_else(|| D::Error::missing_field("id"))?;
                return Ok(Origin::Signature { id });
            }
            "manual" => {
                let id = stored.id.ok_or_else(|| D::Error::missing_field("id"))?;
                return Ok(Origin::Manual { id });
            }
            _ => {}
        }
        let detector = Detector::from_label(&stored.kind)
            .ok_or_else(|| D::Error::custom(format!("unknown origin {:?}", stored.kind)))?;
        let (field, key) = if detector.info().per_severity {
            ("severity", stored.severity)
        } else {
            ("signal", stored.signal)
        };
        let key = key.ok_or_else(|| D::Error::missing_field(field))?;
        Ok(Origin::Detected { detector, key })
    }
}
