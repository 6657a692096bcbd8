//! Rendering validated changes for people as JSON lines (numbers and times as
//! [`crate::format`] writes them).

use serde_json::{Value as Json, json};

use crate::format::{micros_to_decimal, rfc3339_ms};
use crate::ingest::model::{Change, Value};

/// One validated change as a JSON object.
pub fn change_json(change: &Change) -> Json {
    match change {
        Change::Upsert(f) => {
            let mut obj = json!({
                "op": "upsert",
                "metric": f.metric,
                "owner": f.owner.to_string(),
                "source": f.source.to_string(),
                "occurred_at": rfc3339_ms(f.occurred_at_ms),
            });
            match &f.value {
                Value::Count(n) => obj["count"] = json!(n),
                Value::Money { micros, currency } => {
                    obj["amount"] = json!(micros_to_decimal(i128::from(*micros)));
                    obj["currency"] = json!(currency.as_str());
                }
            }
            obj
        }
        Change::Retract { metric, source } => json!({
            "op": "retract",
            "metric": metric,
            "source": source.to_string(),
        }),
    }
}
