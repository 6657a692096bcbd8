//! The small subsets of Bullhorn's request languages the fake understands, over records
//! rendered as JSON objects:
//!
//! - `fields`: `id,dateAdded,owner(id,firstName)`, `*` for every field; a to-one association
//!   without a sub-list renders its id and name fields;
//! - JPQL `where` (`query/{Entity}`): comparisons `field op value` with `=`, `<>`, `!=`, `<`,
//!   `<=`, `>`, `>=`, `IS NULL`, `IS NOT NULL`, joined by `AND`; values are integers (epoch ms
//!   for timestamps), decimals, `true`/`false` and `'text'`; dotted paths (`owner.id`);
//! - Lucene `query` (`search/{Entity}`): `field:[A TO B]` / `field:{A TO B}` ranges, where a
//!   14-digit bound is `yyyyMMddHHmmss` UTC, an 8-digit one `yyyyMMdd`, `*` open, any other
//!   number itself; `field:value` equality (`isDeleted:0`); clauses joined by `AND`;
//! - `sort` / `orderBy`: `field`, `-field`, comma-separated.
//!
//! Anything outside the subset is an error with a message, answered as a 400.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use crate::time::Timestamp;

/// One requested field, with its sub-selection for an association.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Field {
    pub(crate) name: String,
    pub(crate) sub: Option<Vec<Field>>,
}

/// A parsed `fields` parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Fields {
    /// `*`.
    All,
    /// A list.
    List(Vec<Field>),
}

/// Parses `id,owner(id,firstName),dateAdded`.
pub(crate) fn parse_fields(text: &str) -> Result<Fields, String> {
    let text = text.trim();
    if text == "*" {
        return Ok(Fields::All);
    }
    let mut chars = text.chars().peekable();
    let list = parse_field_list(&mut chars, 0)?;
    if chars.next().is_some() {
        return Err(format!("Unbalanced parentheses in fields '{text}'"));
    }
    if list.is_empty() {
        return Err("The fields parameter is empty".to_owned());
    }
    Ok(Fields::List(list))
}

fn parse_field_list(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, depth: usize) -> Result<Vec<Field>, String> {
    let mut fields = Vec::new();
    loop {
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_ascii_alphanumeric() || c == '_' || c == '*' {
                name.push(c);
                chars.next();
            } else if c == ' ' {
                chars.next();
            } else {
                break;
            }
        }
        let sub = if chars.peek() == Some(&'(') {
            chars.next();
            let sub = parse_field_list(chars, depth + 1)?;
            if chars.next() != Some(')') {
                return Err("Unbalanced parentheses in fields".to_owned());
            }
            Some(sub)
        } else {
            None
        };
        if name.is_empty() {
            return Err("An empty field name in fields".to_owned());
        }
        fields.push(Field { name, sub });
        match chars.peek() {
            Some(',') => {
                chars.next();
            }
            Some(')') if depth > 0 => return Ok(fields),
            None => return Ok(fields),
            Some(c) => return Err(format!("Unexpected '{c}' in fields")),
        }
    }
}

/// The fields an association renders when it is asked for without a sub-list: its id and
/// name fields, as Bullhorn does.
const DEFAULT_ASSOCIATION_FIELDS: &[&str] = &["id", "firstName", "lastName", "name", "title"];

/// Projects a full record onto `fields`; an unknown field is an error naming it.
pub(crate) fn select(entity: &str, record: &Map<String, Value>, fields: &Fields) -> Result<Value, String> {
    let mut out = Map::new();
    match fields {
        Fields::All => {
            for (name, value) in record {
                out.insert(name.clone(), default_projection(value));
            }
        }
        Fields::List(list) => {
            for field in list {
                let value = record.get(&field.name).ok_or_else(|| invalid_field(entity, &field.name))?;
                let projected = match (&field.sub, value) {
                    (None, value) => default_projection(value),
                    (Some(_), Value::Null) => Value::Null,
                    (Some(sub), Value::Object(nested)) => select(entity, nested, &Fields::List(sub.clone()))?,
                    (Some(_), _) => return Err(format!("Field '{}' of {entity} is not an association", field.name)),
                };
                out.insert(field.name.clone(), projected);
            }
        }
    }
    Ok(Value::Object(out))
}

fn default_projection(value: &Value) -> Value {
    match value {
        Value::Object(nested) => Value::Object(
            nested
                .iter()
                .filter(|(k, _)| DEFAULT_ASSOCIATION_FIELDS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

pub(crate) fn invalid_field(entity: &str, name: &str) -> String {
    format!("Invalid field '{name}' for entity {entity}")
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    IsNull,
    IsNotNull,
}

/// A literal of a condition.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Lit {
    Number(f64),
    Bool(bool),
    Text(String),
    None,
}

/// One condition on a record.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Condition {
    pub(crate) path: Vec<String>,
    pub(crate) op: Op,
    pub(crate) value: Lit,
}

/// Splits on the keyword `AND` (any case) outside quotes; refuses `OR`.
fn split_and(text: &str) -> Result<Vec<String>, String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let words: Vec<&str> = text.split(' ').collect();
    for word in words {
        if !quoted && word.eq_ignore_ascii_case("and") {
            parts.push(std::mem::take(&mut current));
            continue;
        }
        if !quoted && word.eq_ignore_ascii_case("or") {
            return Err("The fake Bullhorn supports only AND between conditions".to_owned());
        }
        if word.matches('\'').count() % 2 == 1 {
            quoted = !quoted;
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(word);
    }
    parts.push(current);
    let parts: Vec<String> = parts.into_iter().map(|p| p.trim().to_owned()).collect();
    if parts.iter().any(String::is_empty) {
        return Err(format!("Malformed condition list '{text}'"));
    }
    Ok(parts)
}

fn parse_path(text: &str) -> Result<Vec<String>, String> {
    let path: Vec<String> = text.trim().split('.').map(str::to_owned).collect();
    if path.iter().any(|p| p.is_empty() || !p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')) {
        return Err(format!("Invalid field '{}'", text.trim()));
    }
    Ok(path)
}

/// Parses a JPQL `where` clause of the subset.
pub(crate) fn parse_where(text: &str) -> Result<Vec<Condition>, String> {
    split_and(text.trim())?.iter().map(|part| parse_comparison(part)).collect()
}

fn parse_comparison(part: &str) -> Result<Condition, String> {
    let upper = part.to_ascii_uppercase();
    for (suffix, op) in [(" IS NOT NULL", Op::IsNotNull), (" IS NULL", Op::IsNull)] {
        if upper.ends_with(suffix) {
            let path = parse_path(&part[..part.len() - suffix.len()])?;
            return Ok(Condition { path, op, value: Lit::None });
        }
    }
    const OPS: [(&str, Op); 7] =
        [(">=", Op::Ge), ("<=", Op::Le), ("<>", Op::Ne), ("!=", Op::Ne), (">", Op::Gt), ("<", Op::Lt), ("=", Op::Eq)];
    let (at, symbol, op) = OPS
        .iter()
        .filter_map(|(symbol, op)| part.find(symbol).map(|at| (at, *symbol, *op)))
        .min_by_key(|(at, symbol, _)| (*at, std::cmp::Reverse(symbol.len())))
        .ok_or_else(|| format!("No comparison in '{part}'"))?;
    let path = parse_path(&part[..at])?;
    let value = parse_literal(part[at + symbol.len()..].trim())?;
    Ok(Condition { path, op, value })
}

fn parse_literal(text: &str) -> Result<Lit, String> {
    if let Some(inner) = text.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')) {
        return Ok(Lit::Text(inner.replace("''", "'")));
    }
    if text.eq_ignore_ascii_case("true") {
        return Ok(Lit::Bool(true));
    }
    if text.eq_ignore_ascii_case("false") {
        return Ok(Lit::Bool(false));
    }
    text.parse::<f64>().map(Lit::Number).map_err(|_| format!("Invalid value '{text}'"))
}

/// Parses a Lucene `query` of the subset. `is_date` says which fields hold timestamps, so
/// that their bounds are read as `yyyyMMddHHmmss`.
pub(crate) fn parse_lucene(text: &str, is_date: impl Fn(&str) -> bool) -> Result<Vec<Condition>, String> {
    let mut conditions = Vec::new();
    for part in split_and(text.trim())? {
        let (field, rest) = part.split_once(':').ok_or_else(|| format!("No field in '{part}'"))?;
        let path = parse_path(field)?;
        let date = is_date(&path.join("."));
        let rest = rest.trim();
        let range = match (rest.chars().next(), rest.chars().last()) {
            (Some(open @ ('[' | '{')), Some(close @ (']' | '}'))) => Some((open == '[', close == ']')),
            _ => None,
        };
        match range {
            Some((low_inclusive, high_inclusive)) => {
                let inner = &rest[1..rest.len() - 1];
                let (low, high) = inner.split_once(" TO ").ok_or_else(|| format!("Malformed range '{rest}'"))?;
                // An inclusive upper bound or an exclusive lower one means the end of its
                // second (or day); the others its start.
                if let Some(low) = lucene_bound(low.trim(), date, !low_inclusive)? {
                    let op = if low_inclusive { Op::Ge } else { Op::Gt };
                    conditions.push(Condition { path: path.clone(), op, value: Lit::Number(low) });
                }
                if let Some(high) = lucene_bound(high.trim(), date, high_inclusive)? {
                    let op = if high_inclusive { Op::Le } else { Op::Lt };
                    conditions.push(Condition { path, op, value: Lit::Number(high) });
                }
            }
            None => {
                let value = match rest {
                    "true" | "1" if !date => Lit::Bool(true),
                    "false" | "0" if !date => Lit::Bool(false),
                    other => match lucene_bound(other, date, false)? {
                        Some(n) => Lit::Number(n),
                        None => return Err(format!("Invalid value '{other}'")),
                    },
                };
                conditions.push(Condition { path, op: Op::Eq, value });
            }
        }
    }
    Ok(conditions)
}

/// A range bound: `*` is open; for dates 14 digits are `yyyyMMddHHmmss` and 8 `yyyyMMdd`,
/// taken as the last millisecond of that second or day when `end` is set, else the first;
/// other numbers (epoch ms) are themselves.
fn lucene_bound(text: &str, date: bool, end: bool) -> Result<Option<f64>, String> {
    if text == "*" {
        return Ok(None);
    }
    let bad = || format!("Invalid range bound '{text}'");
    if date && text.bytes().all(|b| b.is_ascii_digit()) && (text.len() == 14 || text.len() == 8) {
        let n = |r: std::ops::Range<usize>| text[r].parse::<u32>().map_err(|_| bad());
        let (h, m, s) = if text.len() == 14 { (n(8..10)?, n(10..12)?, n(12..14)?) } else { (0, 0, 0) };
        let at = Timestamp::from_ymd_hms(n(0..4)? as i32, n(4..6)?, n(6..8)?, h, m, s).ok_or_else(bad)?;
        let span = if text.len() == 14 { 1000 } else { 86_400_000 };
        let ms = at.unix() * 1000 + if end { span - 1 } else { 0 };
        return Ok(Some(ms as f64));
    }
    text.parse::<f64>().map(Some).map_err(|_| bad())
}

/// The value at a dotted path of a record, `None` if a step does not exist.
pub(crate) fn lookup<'a>(record: &'a Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let value = record.get(first)?;
    if rest.is_empty() {
        return Some(value);
    }
    match value {
        Value::Object(nested) => lookup(nested, rest),
        Value::Null => Some(&Value::Null),
        _ => None,
    }
}

/// Checks that every condition names a field of the record, so that a misspelt field is a
/// 400 and not an empty answer.
pub(crate) fn check_paths(entity: &str, sample: &Map<String, Value>, conditions: &[Condition]) -> Result<(), String> {
    for c in conditions {
        if lookup(sample, &c.path).is_none() {
            return Err(invalid_field(entity, &c.path.join(".")));
        }
    }
    Ok(())
}

/// Whether a record meets every condition (SQL semantics: a comparison with null is false).
pub(crate) fn matches(record: &Map<String, Value>, conditions: &[Condition]) -> bool {
    conditions.iter().all(|c| {
        let value = lookup(record, &c.path).unwrap_or(&Value::Null);
        match c.op {
            Op::IsNull => value.is_null(),
            Op::IsNotNull => !value.is_null(),
            op => match compare(value, &c.value) {
                None => false,
                Some(ordering) => match op {
                    Op::Eq => ordering == Ordering::Equal,
                    Op::Ne => ordering != Ordering::Equal,
                    Op::Lt => ordering == Ordering::Less,
                    Op::Le => ordering != Ordering::Greater,
                    Op::Gt => ordering == Ordering::Greater,
                    Op::Ge => ordering != Ordering::Less,
                    Op::IsNull | Op::IsNotNull => false,
                },
            },
        }
    })
}

fn compare(value: &Value, literal: &Lit) -> Option<Ordering> {
    match (value, literal) {
        (Value::Number(n), Lit::Number(l)) => n.as_f64()?.partial_cmp(l),
        (Value::Bool(b), Lit::Bool(l)) => Some(b.cmp(l)),
        // `isDeleted = 0` as well as `isDeleted = false`.
        (Value::Bool(b), Lit::Number(l)) if *l == 0.0 || *l == 1.0 => Some(b.cmp(&(*l == 1.0))),
        (Value::String(s), Lit::Text(l)) => Some(s.as_str().cmp(l.as_str())),
        _ => None,
    }
}

/// One sort key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SortKey {
    pub(crate) path: Vec<String>,
    pub(crate) descending: bool,
}

/// Parses `dateLastModified,-id`.
pub(crate) fn parse_sort(text: &str) -> Result<Vec<SortKey>, String> {
    text.split(',')
        .map(|part| {
            let part = part.trim();
            let (descending, name) = match part.strip_prefix('-') {
                Some(name) => (true, name),
                None => (false, part.strip_prefix('+').unwrap_or(part)),
            };
            Ok(SortKey { path: parse_path(name)?, descending })
        })
        .collect()
}

/// Orders two records by the keys, nulls first, then by id.
pub(crate) fn order(a: &Map<String, Value>, b: &Map<String, Value>, keys: &[SortKey]) -> Ordering {
    for key in keys {
        let (x, y) = (lookup(a, &key.path).unwrap_or(&Value::Null), lookup(b, &key.path).unwrap_or(&Value::Null));
        let ordering = value_order(x, y);
        let ordering = if key.descending { ordering.reverse() } else { ordering };
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    value_order(a.get("id").unwrap_or(&Value::Null), b.get("id").unwrap_or(&Value::Null))
}

fn value_order(x: &Value, y: &Value) -> Ordering {
    match (x, y) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        (Value::Number(a), Value::Number(b)) => {
            a.as_f64().unwrap_or(0.0).partial_cmp(&b.as_f64().unwrap_or(0.0)).unwrap_or(Ordering::Equal)
        }
        (Value::String(a), Value::String(b)) => a.cmp(b),
        (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
        _ => Ordering::Equal,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn record() -> Map<String, Value> {
        json!({"id": 9001, "dateAdded": 1748611200000i64, "isDeleted": false, "status": "Placed",
               "owner": {"id": 3101, "firstName": "A", "lastName": "B", "email": "x@y.example"}, "dateEnd": null})
        .as_object()
        .unwrap()
        .clone()
    }

    #[test]
    fn fields_select_nested_and_default_associations() {
        let fields = parse_fields("id,owner(id),status").unwrap();
        assert_eq!(
            select("Placement", &record(), &fields).unwrap(),
            json!({"id":9001,"owner":{"id":3101},"status":"Placed"})
        );
        let plain = parse_fields("owner").unwrap();
        assert_eq!(
            select("Placement", &record(), &plain).unwrap(),
            json!({"owner":{"id":3101,"firstName":"A","lastName":"B"}})
        );
        let bad = parse_fields("id,candidate").unwrap();
        assert_eq!(select("Placement", &record(), &bad).unwrap_err(), "Invalid field 'candidate' for entity Placement");
        assert!(parse_fields("id,owner(id").is_err());
        assert!(parse_fields("id,,x").is_err());
        assert!(select("Placement", &record(), &parse_fields("owner(secret)").unwrap()).is_err());
    }

    #[test]
    fn jpql_conditions_compare_numbers_booleans_and_text() {
        let r = record();
        let yes = |w: &str| matches(&r, &parse_where(w).unwrap());
        assert!(yes("dateAdded>1748611199999"));
        assert!(!yes("dateAdded>1748611200000"));
        assert!(yes("dateAdded>=1748611200000 AND isDeleted=false"));
        assert!(yes("isDeleted = 0 and owner.id = 3101"));
        assert!(yes("status='Placed'"));
        assert!(yes("status<>'Terminated' AND dateEnd IS NULL"));
        assert!(!yes("dateEnd IS NOT NULL"));
        assert!(!yes("dateEnd>0"));
        assert!(parse_where("a=1 OR b=2").is_err());
        assert!(parse_where("dateAdded").is_err());
        assert!(parse_where("a>x").is_err());
        assert_eq!(
            check_paths("Placement", &r, &parse_where("nope=1").unwrap()).unwrap_err(),
            "Invalid field 'nope' for entity Placement"
        );
    }

    #[test]
    fn lucene_ranges_read_bullhorn_dates() {
        let r = record(); // dateAdded 2025-05-30T13:20:00Z
        let date = |f: &str| f == "dateAdded";
        let yes = |q: &str| matches(&r, &parse_lucene(q, date).unwrap());
        assert!(yes("dateAdded:[20250530132000 TO *]"));
        assert!(!yes("dateAdded:[20250530132001 TO *]"));
        assert!(yes("dateAdded:[* TO 20250530132000]"));
        assert!(!yes("dateAdded:{* TO 20250530132000}"));
        assert!(yes("dateAdded:[20250530 TO 20250530]"));
        assert!(yes("dateAdded:[1748611200000 TO *] AND isDeleted:0"));
        assert!(!yes("isDeleted:1"));
        assert!(parse_lucene("dateAdded:[2025 TO]", date).is_err());
    }

    #[test]
    fn sorting_puts_nulls_first_and_breaks_ties_by_id() {
        let a = json!({"id": 2, "t": 5}).as_object().unwrap().clone();
        let b = json!({"id": 1, "t": 5}).as_object().unwrap().clone();
        let c = json!({"id": 3, "t": null}).as_object().unwrap().clone();
        let keys = parse_sort("t").unwrap();
        assert_eq!(order(&a, &b, &keys), Ordering::Greater);
        assert_eq!(order(&c, &a, &keys), Ordering::Less);
        assert_eq!(order(&a, &c, &parse_sort("-t").unwrap()), Ordering::Less);
    }
}
