//! Every answer the end-to-end tests receive is checked against the committed OpenAPI
//! document (`host/openapi.json`, which a unit test keeps equal to what `/openapi.json`
//! serves): the status must be one the operation documents, and a JSON body must match the
//! documented schema, with no field the schema does not name. Many bodies are built with
//! `json!` in the handlers while their schema is a separate type, so this is what keeps the
//! two from drifting apart.
//!
//! The checker understands the subset of JSON Schema that utoipa emits: `$ref` to
//! `#/components/schemas`, `type` (one or several, `null` included), `properties`,
//! `required`, `items`, `enum`, `const`, `oneOf`, `anyOf`, `allOf` and
//! `additionalProperties`. Formats are not checked.

use std::sync::LazyLock;

use serde_json::{Map, Value as Json};

/// The committed document.
static SPEC: LazyLock<Json> =
    LazyLock::new(|| serde_json::from_str(include_str!("../../host/openapi.json")).expect("host/openapi.json parses"));

/// Checks one answer: `Err` says what does not match the document. A path or method the
/// document does not have may only answer the service's 404 or 405 (a test of an unknown
/// route): anything else the service serves must be documented.
pub fn check_answer(method: &str, path: &str, status: u16, text: &str) -> Result<(), String> {
    let path = path.split('?').next().unwrap_or(path);
    let Some(operation) = operation(method, path) else {
        return match status {
            404 | 405 => Ok(()),
            // The document's own viewer (Swagger UI's files) is not an operation of the API.
            _ if path == "/docs" || path.starts_with("/docs/") => Ok(()),
            _ => Err(format!("{method} {path} answered {status}, but the document has no such operation")),
        };
    };
    let responses = &operation["responses"];
    let Some(response) = responses.get(status.to_string()) else {
        let documented: Vec<&String> = responses.as_object().map(|r| r.keys().collect()).unwrap_or_default();
        return Err(format!("{method} {path} answered {status}, which it does not document ({documented:?})"));
    };
    let Some(schema) = response.pointer("/content/application~1json/schema") else { return Ok(()) };
    let body: Json =
        serde_json::from_str(text).map_err(|e| format!("{method} {path} {status}: the body is not JSON ({e})"))?;
    let mut problems = Vec::new();
    check(schema, &body, "$", &mut problems);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{method} {path} {status}: the body does not match its schema:\n  {}", problems.join("\n  ")))
    }
}

/// Checks one event of a server-sent event stream that `GET path` answered: the operation
/// must document an event stream whose event schema (a `oneOf` of alternatives, one per
/// event type) has an alternative for `event`, and `data` must be JSON matching that
/// alternative's `contentSchema`.
pub fn check_stream_event(path: &str, event: &str, data: &str) -> Result<(), String> {
    let path = path.split('?').next().unwrap_or(path);
    let operation = operation("get", path).ok_or_else(|| format!("GET {path} is not documented"))?;
    let schema = operation
        .pointer("/responses/200/content/text~1event-stream/schema")
        .ok_or_else(|| format!("GET {path} documents no event stream"))?;
    let alternatives =
        resolve(schema)["oneOf"].as_array().ok_or_else(|| format!("GET {path}: events are not a oneOf"))?;
    let alternative = alternatives
        .iter()
        .map(resolve)
        .find(|alt| {
            alt.pointer("/properties/event/enum")
                .and_then(Json::as_array)
                .is_some_and(|e| e.contains(&Json::from(event)))
        })
        .ok_or_else(|| format!("GET {path} sent a `{event}` event, which the document does not list"))?;
    let content = alternative
        .pointer("/properties/data/contentSchema")
        .ok_or_else(|| format!("GET {path}: the `{event}` event documents no data schema"))?;
    let body: Json = serde_json::from_str(data).map_err(|e| format!("GET {path}: `{event}` data is not JSON ({e})"))?;
    let mut problems = Vec::new();
    check(content, &body, "$", &mut problems);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("GET {path}: `{event}` data does not match its schema:\n  {}", problems.join("\n  ")))
    }
}

/// The operation for a concrete path (`/v1/contests/123/leaderboard` matches
/// `/v1/contests/{id}/leaderboard`), preferring the template with the fewest parameters.
fn operation(method: &str, path: &str) -> Option<&'static Json> {
    let method = method.to_ascii_lowercase();
    let segments: Vec<&str> = path.split('/').collect();
    let paths = SPEC["paths"].as_object()?;
    paths
        .iter()
        .filter(|(template, _)| {
            let parts: Vec<&str> = template.split('/').collect();
            parts.len() == segments.len()
                && parts.iter().zip(&segments).all(|(t, s)| (t.starts_with('{') && !s.is_empty()) || t == s)
        })
        .min_by_key(|(template, _)| template.matches('{').count())
        .and_then(|(_, ops)| ops.get(&method))
}

fn resolve(schema: &Json) -> &Json {
    let mut schema = schema;
    // A `$ref` may sit beside a description only; follow it.
    while let Some(reference) = schema.get("$ref").and_then(Json::as_str) {
        let name = reference.trim_start_matches("#/components/schemas/");
        schema = &SPEC["components"]["schemas"][name];
    }
    schema
}

fn type_name(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "boolean",
        Json::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

fn type_allows(declared: &Json, value: &Json) -> bool {
    let actual = type_name(value);
    let allows = |t: &str| t == actual || (t == "number" && actual == "integer");
    match declared {
        Json::String(t) => allows(t),
        Json::Array(ts) => ts.iter().filter_map(Json::as_str).any(allows),
        _ => true,
    }
}

/// Appends to `problems` every way `value` (at `at`) breaks `schema`.
fn check(schema: &Json, value: &Json, at: &str, problems: &mut Vec<String>) {
    let schema = resolve(schema);
    if let Some(all) = schema.get("allOf").and_then(Json::as_array) {
        for part in all {
            check(part, value, at, problems);
        }
    }
    // `anyOf`: at least one option fits; `oneOf`: exactly one does (a value that fits two
    // options means the document is ambiguous, as a client generator would find).
    for key in ["oneOf", "anyOf"] {
        if let Some(options) = schema.get(key).and_then(Json::as_array) {
            let fits = options
                .iter()
                .filter(|o| {
                    let mut mine = Vec::new();
                    check(o, value, at, &mut mine);
                    mine.is_empty()
                })
                .count();
            if fits == 0 {
                let mut first = Vec::new();
                if let Some(o) = options.first() {
                    check(o, value, at, &mut first);
                }
                problems.push(format!(
                    "{at}: {value} fits none of the {} `{key}` options (the first says: {})",
                    options.len(),
                    first.join("; ")
                ));
            } else if fits > 1 && key == "oneOf" {
                problems
                    .push(format!("{at}: {value} fits {fits} of the `oneOf` options (they must exclude each other)"));
            }
        }
    }
    if let Some(declared) = schema.get("type")
        && !type_allows(declared, value)
    {
        problems.push(format!("{at}: a {} where the schema says {declared}", type_name(value)));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Json::as_array)
        && !allowed.contains(value)
    {
        problems.push(format!("{at}: {value} is not one of {}", Json::Array(allowed.clone())));
    }
    if let Some(expected) = schema.get("const")
        && expected != value
    {
        problems.push(format!("{at}: {value} is not {expected}"));
    }
    match value {
        Json::Object(fields) => check_object(schema, fields, at, problems),
        Json::Array(items) => {
            if let Some(item) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    check(item, v, &format!("{at}[{i}]"), problems);
                }
            }
        }
        _ => {}
    }
}

fn check_object(schema: &Json, fields: &Map<String, Json>, at: &str, problems: &mut Vec<String>) {
    let properties = schema.get("properties").and_then(Json::as_object);
    if let Some(required) = schema.get("required").and_then(Json::as_array) {
        for name in required.iter().filter_map(Json::as_str) {
            if !fields.contains_key(name) {
                problems.push(format!("{at}: `{name}` is required and missing"));
            }
        }
    }
    let additional = schema.get("additionalProperties");
    for (name, v) in fields {
        let here = format!("{at}.{name}");
        match (properties.and_then(|p| p.get(name)), additional) {
            (Some(property), _) => check(property, v, &here, problems),
            (None, Some(Json::Bool(false))) => problems.push(format!("{here}: not allowed by the schema")),
            (None, Some(extra @ Json::Object(_))) => check(extra, v, &here, problems),
            // A field the schema does not name, on an object the schema describes field by
            // field: the body and its documentation have drifted apart.
            (None, _) if properties.is_some() => problems.push(format!("{here}: not in the schema")),
            (None, _) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_documented_body_passes_and_drift_is_named() {
        let healthy = json!({"status": "ok", "dev_allow_loopback": false}).to_string();
        assert_eq!(check_answer("GET", "/healthz", 200, &healthy), Ok(()));
        let wrong =
            check_answer("GET", "/healthz", 200, &json!({"status": 1, "dev_allow_loopback": false}).to_string())
                .unwrap_err();
        assert!(wrong.contains("$.status: a integer where the schema says \"string\""), "{wrong}");
        let error = json!({"error": {"code": "not_found", "message": "contest not found"}}).to_string();
        assert_eq!(check_answer("GET", "/v1/contests/3f2a/leaderboard", 404, &error), Ok(()));
        let drift = json!({"error": {"code": "x", "message": "y", "extra": 1}}).to_string();
        let problem = check_answer("GET", "/v1/contests/3f2a/leaderboard", 404, &drift).unwrap_err();
        assert!(problem.contains("$.error.extra: not in the schema"), "{problem}");
        let missing = json!({"error": {"code": "x"}}).to_string();
        let problem = check_answer("GET", "/v1/contests/3f2a/leaderboard", 404, &missing).unwrap_err();
        assert!(problem.contains("`message` is required"), "{problem}");
        let undocumented = check_answer("GET", "/v1/contests/3f2a/leaderboard", 418, "").unwrap_err();
        assert!(undocumented.contains("does not document"), "{undocumented}");
        assert_eq!(check_answer("GET", "/no/such/route", 404, ""), Ok(()));
        let served_but_undocumented = check_answer("GET", "/no/such/route", 200, "{}").unwrap_err();
        assert!(served_but_undocumented.contains("no such operation"), "{served_but_undocumented}");

        let stream = "/v1/contests/3f2a/leaderboard/stream";
        let names = json!({"3f2a": "Ada"}).to_string();
        assert_eq!(check_stream_event(stream, "names", &names), Ok(()));
        let not_names = check_stream_event(stream, "names", &json!({"3f2a": 7}).to_string()).unwrap_err();
        assert!(not_names.contains("does not match"), "{not_names}");
        let unknown = check_stream_event(stream, "gossip", &names).unwrap_err();
        assert!(unknown.contains("does not list"), "{unknown}");
        let error = json!({"error": {"code": "gone", "message": "gone"}}).to_string();
        assert_eq!(check_stream_event(stream, "error", &error), Ok(()));
        assert!(check_stream_event(stream, "standing", &error).is_err());
    }
}
