//! Differential fuzzing of `json::skim` against `serde_json`: for every generated or mutated
//! document and every target type, both deserializers give the same value or both refuse.
//!
//! Documents come from three sources: JSON written by a random generator (escapes,
//! surrogates, number shapes, whitespace, nesting), CRM-shaped pages whose records mostly
//! have the right field types (so typed decoding succeeds often and the values are
//! compared), and the connectors' recorded CRM pages, each mutated a few times (bytes
//! deleted, duplicated, swapped, tokens inserted, truncated).
//!
//! A short run is part of the test suite. A long one runs on demand:
//! `cargo xtask fuzz --secs 600` (or set `ONEUP_FUZZ_SECS`). `ONEUP_FUZZ_SEED` replays one
//! seed; a failure prints the seed, the target type and the document.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oneup_connector_sdk::Decimal;
use oneup_connector_sdk::json::{CursorPage, Text, skim};
use serde::Deserialize;
use serde::de::IgnoredAny;

/// xorshift64*: small, fast, and the same sequence for the same seed everywhere.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

// ---------------------------------------------------------------------------------------------
// Target types: shaped like the connectors' own record types.

#[derive(Debug, PartialEq, Deserialize)]
struct PdDeal<'a> {
    id: i64,
    owner_id: Option<i64>,
    value: Option<Decimal>,
    #[serde(borrow)]
    currency: Option<Text<'a>>,
    #[serde(borrow)]
    status: Option<Text<'a>>,
    is_deleted: Option<bool>,
    #[serde(borrow)]
    update_time: Option<Text<'a>>,
}

#[derive(Debug, PartialEq, Deserialize)]
struct PdActivity<'a> {
    id: i64,
    #[serde(rename = "type", borrow)]
    kind: Option<Text<'a>>,
    owner_id: Option<i64>,
    done: Option<bool>,
}

#[derive(Debug, PartialEq, Deserialize)]
struct SfPage<'a, T> {
    done: bool,
    #[serde(rename = "nextRecordsUrl", borrow, default)]
    next_records_url: Option<Text<'a>>,
    records: Vec<T>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SfOpportunity<'a> {
    #[serde(borrow)]
    id: Text<'a>,
    #[serde(borrow, default)]
    owner_id: Option<Text<'a>>,
    #[serde(default)]
    is_won: Option<bool>,
    #[serde(default)]
    amount: Option<Decimal>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BhPage<T> {
    #[serde(default)]
    total: Option<u64>,
    #[serde(default)]
    start: Option<u64>,
    data: Vec<T>,
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BhPlacement<'a> {
    id: u64,
    #[serde(default)]
    date_added: Option<i64>,
    #[serde(borrow, default)]
    status: Option<Text<'a>>,
    #[serde(default)]
    fee: Option<f64>,
    #[serde(default)]
    salary: Option<Decimal>,
}

/// Both deserializers agree on `text` for `T`: the same value, or both refuse it.
fn agree<'a, T>(text: &'a str, what: &str) -> Result<bool, String>
where
    T: Deserialize<'a> + PartialEq + Debug,
{
    let ours = skim::from_str::<T>(text);
    let theirs = serde_json::from_str::<T>(text);
    match (&ours, &theirs) {
        (Ok(a), Ok(b)) if a == b => Ok(true),
        (Err(_), Err(_)) => Ok(false),
        _ => Err(format!("{what}: skim {ours:?} vs serde_json {theirs:?}")),
    }
}

/// Every target type on one document; how many of them decoded.
fn check_all(text: &str) -> Result<usize, String> {
    let results = [
        agree::<serde_json::Value>(text, "serde_json::Value")?,
        agree::<IgnoredAny>(text, "IgnoredAny")?,
        agree::<BTreeMap<String, serde_json::Value>>(text, "BTreeMap<String, Value>")?,
        agree::<CursorPage<PdDeal<'_>>>(text, "CursorPage<PdDeal>")?,
        agree::<CursorPage<PdActivity<'_>>>(text, "CursorPage<PdActivity>")?,
        agree::<Vec<PdDeal<'_>>>(text, "Vec<PdDeal>")?,
        agree::<SfPage<'_, SfOpportunity<'_>>>(text, "SfPage<SfOpportunity>")?,
        agree::<BhPage<BhPlacement<'_>>>(text, "BhPage<BhPlacement>")?,
    ];
    Ok(results.iter().filter(|ok| **ok).count())
}

// ---------------------------------------------------------------------------------------------
// Generators.

const KEYS: &[&str] = &[
    "id",
    "owner_id",
    "value",
    "currency",
    "status",
    "is_deleted",
    "update_time",
    "type",
    "done",
    "data",
    "additional_data",
    "next_cursor",
    "records",
    "nextRecordsUrl",
    "Id",
    "OwnerId",
    "IsWon",
    "Amount",
    "total",
    "start",
    "dateAdded",
    "fee",
    "salary",
    "title",
    "custom_fields",
    "\\u0069d",
    "i\\u0064",
    "",
];

const STRING_PIECES: &[&str] = &[
    "a",
    "Café",
    "EUR",
    "won",
    "2025-06-01T10:00:00Z",
    " ",
    "\\n",
    "\\\"",
    "\\\\",
    "\\/",
    "\\b\\f\\r\\t",
    "\\u00e9",
    "\\u0000",
    "\\ud83d\\ude00",
    "\\ud800",
    "\\udc00",
    "\\ud800\\u0041",
    "😀",
    "日本",
    "\u{7f}",
    "a fairly long plain string past eight bytes",
];

const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "7",
    "12750.5",
    "0.30",
    "1e3",
    "1E+2",
    "-1.5e-3",
    "255",
    "256",
    "4294967295",
    "4294967296",
    "9007199254740993",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999",
    "1e308",
    "1e309",
    "-1e400",
    "2.2250738585072014e-308",
    "5e-324",
    "0.1",
    "123456.123456",
    "1.0000001",
];

fn whitespace(rng: &mut Rng, out: &mut String) {
    if rng.chance(70) {
        return;
    }
    for _ in 0..=rng.below(3) {
        out.push(rng.pick(&[' ', '\n', '\t', '\r']));
    }
}

fn gen_number(rng: &mut Rng, out: &mut String) {
    if rng.chance(60) {
        out.push_str(rng.pick(NUMBERS));
        return;
    }
    if rng.chance(30) {
        out.push('-');
    }
    let digits = 1 + rng.below(22);
    for i in 0..digits {
        let d = if i == 0 && digits > 1 { 1 + rng.below(9) } else { rng.below(10) };
        out.push(char::from(b'0' + d as u8));
    }
    if rng.chance(30) {
        out.push('.');
        for _ in 0..=rng.below(18) {
            out.push(char::from(b'0' + rng.below(10) as u8));
        }
    }
    if rng.chance(20) {
        out.push(rng.pick(&['e', 'E']));
        if rng.chance(50) {
            out.push(rng.pick(&['+', '-']));
        }
        out.push_str(&rng.below(400).to_string());
    }
}

fn gen_string(rng: &mut Rng, out: &mut String) {
    out.push('"');
    for _ in 0..rng.below(4) {
        out.push_str(rng.pick(STRING_PIECES));
    }
    out.push('"');
}

fn gen_key(rng: &mut Rng, out: &mut String) {
    if rng.chance(85) {
        out.push('"');
        out.push_str(rng.pick(KEYS));
        out.push('"');
    } else {
        gen_string(rng, out);
    }
}

fn gen_value(rng: &mut Rng, depth: u32, out: &mut String) {
    whitespace(rng, out);
    let scalar_only = depth >= 5;
    match rng.below(if scalar_only { 5 } else { 7 }) {
        0 => out.push_str("null"),
        1 => out.push_str(if rng.chance(50) { "true" } else { "false" }),
        2 | 3 => gen_number(rng, out),
        4 => gen_string(rng, out),
        5 => {
            out.push('[');
            for i in 0..rng.below(4) {
                if i > 0 {
                    out.push(',');
                }
                gen_value(rng, depth + 1, out);
            }
            whitespace(rng, out);
            out.push(']');
        }
        _ => {
            out.push('{');
            for i in 0..rng.below(5) {
                if i > 0 {
                    out.push(',');
                }
                whitespace(rng, out);
                gen_key(rng, out);
                whitespace(rng, out);
                out.push(':');
                gen_value(rng, depth + 1, out);
            }
            whitespace(rng, out);
            out.push('}');
        }
    }
    whitespace(rng, out);
}

/// A field whose value usually has the type the target expects, sometimes anything.
fn field(rng: &mut Rng, out: &mut String, key: &str, right: impl FnOnce(&mut Rng, &mut String)) {
    out.push('"');
    out.push_str(key);
    out.push_str("\":");
    if rng.chance(85) {
        right(rng, out);
    } else {
        gen_value(rng, 4, out);
    }
}

/// Writes one field of a record.
type FieldWriter = dyn FnOnce(&mut Rng, &mut String);

fn gen_record(rng: &mut Rng, out: &mut String) {
    out.push('{');
    let mut fields: Vec<Box<FieldWriter>> = vec![
        Box::new(|r, o| field(r, o, "id", |r, o| o.push_str(&r.below(100_000).to_string()))),
        Box::new(|r, o| field(r, o, "owner_id", |r, o| o.push_str(&r.below(50).to_string()))),
        Box::new(|r, o| field(r, o, "value", gen_number)),
        Box::new(|r, o| field(r, o, "currency", |_, o| o.push_str("\"EUR\""))),
        Box::new(|r, o| field(r, o, "status", gen_string)),
        Box::new(|r, o| field(r, o, "is_deleted", |r, o| o.push_str(if r.chance(50) { "true" } else { "false" }))),
        Box::new(|r, o| field(r, o, "title", gen_string)),
        Box::new(|r, o| field(r, o, "custom_fields", |r, o| gen_value(r, 2, o))),
        Box::new(|r, o| field(r, o, "Id", |r, o| o.push_str(&format!("\"006Hs{:05}\"", r.below(99_999))))),
        Box::new(|r, o| field(r, o, "OwnerId", gen_string)),
        Box::new(|r, o| field(r, o, "IsWon", |_, o| o.push_str("true"))),
        Box::new(|r, o| field(r, o, "Amount", gen_number)),
        Box::new(|r, o| {
            field(r, o, "dateAdded", |r, o| o.push_str(&(1_748_870_400_000u64 + r.next() % 1_000_000).to_string()))
        }),
        Box::new(|r, o| field(r, o, "fee", gen_number)),
        Box::new(|r, o| field(r, o, "salary", gen_number)),
        Box::new(|r, o| field(r, o, "type", gen_string)),
        Box::new(|r, o| field(r, o, "done", |_, o| o.push_str("false"))),
    ];
    // A random subset in a random order (a duplicate key now and then).
    let mut first = true;
    while !fields.is_empty() {
        let i = rng.below(fields.len());
        let f = fields.swap_remove(i);
        if rng.chance(70) {
            if !first {
                out.push(',');
            }
            first = false;
            whitespace(rng, out);
            f(rng, out);
        }
    }
    if rng.chance(3) && !first {
        out.push_str(",\"id\":1");
    }
    out.push('}');
}

fn gen_page(rng: &mut Rng) -> String {
    let mut out = String::new();
    let records = |rng: &mut Rng, out: &mut String| {
        out.push('[');
        for i in 0..rng.below(4) {
            if i > 0 {
                out.push(',');
            }
            gen_record(rng, out);
        }
        out.push(']');
    };
    match rng.below(3) {
        0 => {
            out.push_str("{\"success\":true,\"data\":");
            records(rng, &mut out);
            out.push_str(",\"additional_data\":{\"next_cursor\":");
            if rng.chance(50) {
                out.push_str("null")
            } else {
                gen_string(rng, &mut out)
            }
            out.push_str("}}");
        }
        1 => {
            out.push_str("{\"totalSize\":3,\"done\":");
            out.push_str(if rng.chance(50) { "true" } else { "false" });
            out.push_str(",\"nextRecordsUrl\":\"/services/data/v62.0/query/01g-2000\",\"records\":");
            records(rng, &mut out);
            out.push('}');
        }
        _ => {
            out.push_str("{\"total\":7,\"start\":0,\"count\":2,\"data\":");
            records(rng, &mut out);
            out.push('}');
        }
    }
    out
}

const INSERTS: &[&str] = &[
    ",", "]", "}", "[", "{", "\"", "\\", ":", "null", "tru", "1e", "-", ".", "\\u00", "\\ud800", "\u{1}", "é",
    "{\"a\":", "0", "01", " ", "\"id\":", "1.", "e5", "\\u0022",
];

/// `text` with a few random edits, always on character boundaries (the input is a `&str`).
fn mutate(rng: &mut Rng, text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for _ in 0..=rng.below(3) {
        if chars.is_empty() {
            break;
        }
        let at = rng.below(chars.len());
        match rng.below(6) {
            0 => {
                let len = 1 + rng.below(8).min(chars.len() - at - 1);
                chars.drain(at..(at + len).min(chars.len()));
            }
            1 => {
                let insert = rng.pick(INSERTS);
                chars.splice(at..at, insert.chars());
            }
            2 => {
                let end = (at + 1 + rng.below(40)).min(chars.len());
                let copy: Vec<char> = chars[at..end].to_vec();
                let to = rng.below(chars.len());
                chars.splice(to..to, copy);
            }
            3 => {
                let other = rng.below(chars.len());
                chars.swap(at, other);
            }
            4 => chars.truncate(at),
            _ => chars[at] = rng.pick(&['0', '"', ',', '}', ']', 'x', ' ', '\\', '-', 'e']),
        }
    }
    chars.into_iter().collect()
}

/// The connectors' recorded CRM pages (JSON files under `connectors/*/tests/fixtures`).
fn recorded_pages() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../connectors");
    let mut files: Vec<PathBuf> = Vec::new();
    for connector in std::fs::read_dir(&root).expect("the connectors folder") {
        let fixtures = connector.expect("a folder entry").path().join("tests/fixtures");
        let Ok(entries) = std::fs::read_dir(&fixtures) else { continue };
        for entry in entries {
            let path = entry.expect("a fixture").path();
            if path.extension().is_some_and(|e| e == "json") {
                files.push(path);
            }
        }
    }
    files.sort();
    files.iter().map(|p| std::fs::read_to_string(p).expect("a UTF-8 fixture")).collect()
}

/// What one run did.
#[derive(Default, Debug)]
struct Tally {
    documents: u64,
    decoded: u64,
    refused_by_both: u64,
}

fn run_one(text: &str, seed: u64, tally: &mut Tally) {
    match check_all(text) {
        Ok(decoded) => {
            tally.documents += 1;
            tally.decoded += decoded as u64;
            tally.refused_by_both += (8 - decoded) as u64;
        }
        Err(why) => panic!("skim and serde_json disagree (seed {seed}): {why}\ndocument: {text:?}"),
    }
}

/// One seed's worth of documents from every source.
fn round(seed: u64, corpus: &[String], tally: &mut Tally) {
    let mut rng = Rng::new(seed);
    let mut doc = String::new();
    gen_value(&mut rng, 0, &mut doc);
    run_one(&doc, seed, tally);
    let page = gen_page(&mut rng);
    run_one(&page, seed, tally);
    run_one(&mutate(&mut rng, &page), seed, tally);
    let recorded = &corpus[rng.below(corpus.len())];
    run_one(&mutate(&mut rng, recorded), seed, tally);
}

#[test]
fn skim_agrees_with_serde_json_on_generated_and_mutated_pages() {
    let corpus = recorded_pages();
    assert!(corpus.len() >= 10, "the connectors' recorded pages are the seed corpus; found {}", corpus.len());

    let mut tally = Tally::default();
    // Every recorded page as it is: typed targets decode (the values are compared).
    for page in &corpus {
        run_one(page, 0, &mut tally);
    }

    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    if let Some(seed) = env("ONEUP_FUZZ_SEED") {
        round(seed, &corpus, &mut tally);
        eprintln!("seed {seed}: {tally:?}");
        return;
    }
    let first_seed = env("ONEUP_FUZZ_FIRST_SEED").unwrap_or(1);
    let deadline = env("ONEUP_FUZZ_SECS").map(|s| Instant::now() + Duration::from_secs(s));
    // The suite's short run: a fixed range of seeds, so a failure here is reproducible.
    let rounds = env("ONEUP_FUZZ_ROUNDS").unwrap_or(if deadline.is_some() { u64::MAX } else { 4_000 });
    let mut seed = first_seed;
    while seed - first_seed < rounds && deadline.is_none_or(|d| Instant::now() < d) {
        round(seed, &corpus, &mut tally);
        seed += 1;
    }
    eprintln!("seeds {first_seed}..{seed}: {tally:?}");
    // The generators are worth something only if both outcomes are common.
    assert!(tally.decoded > tally.documents, "too few documents decode: {tally:?}");
    assert!(tally.refused_by_both > tally.documents, "too few documents are refused: {tally:?}");
}
