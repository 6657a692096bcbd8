//! A small SOQL parser: enough of the language for the queries a read-only connector makes.
//!
//! ```text
//! SELECT field [, field …] FROM Object
//!   [WHERE condition [AND condition …]]
//!   [ORDER BY field [ASC | DESC] [NULLS FIRST | NULLS LAST]]
//!   [LIMIT n]
//! condition := field (= | != | <> | < | <= | > | >=) literal | field IN (literal, …)
//! literal   := 'string' | true | false | null | number | 2025-06-01 | 2025-06-01T00:00:00Z
//! ```
//!
//! Keywords and field names are case-insensitive; fields may be relationship paths
//! (`Owner.Email`). Date and datetime literals are unquoted, as SOQL requires: a quoted
//! `'2025-06-01T00:00:00Z'` is a string, which the evaluator refuses for a datetime field just
//! as Salesforce does. Anything else (`OR`, sub-queries, functions, `GROUP BY`) is answered
//! with `MALFORMED_QUERY`.

use crate::time::{Date, Timestamp};

/// A parsed query.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Soql {
    /// The selected fields as written (`Id`, `Owner.Name`).
    pub(crate) fields: Vec<String>,
    /// The object as written.
    pub(crate) object: String,
    /// Conditions, all of which must hold.
    pub(crate) conditions: Vec<Condition>,
    /// `ORDER BY`: field, ascending, nulls first.
    pub(crate) order: Option<(String, bool, bool)>,
    /// `LIMIT`.
    pub(crate) limit: Option<usize>,
}

/// `field op literal`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Condition {
    pub(crate) field: String,
    pub(crate) op: Op,
    /// One literal, or the list of `IN (…)`.
    pub(crate) values: Vec<Literal>,
}

/// A comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
}

/// A literal in a condition.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Literal {
    Null,
    Bool(bool),
    /// A quoted string.
    Str(String),
    /// A number, as written.
    Number(f64),
    Date(Date),
    DateTime(Timestamp),
}

impl Literal {
    /// What SOQL calls the literal's type, for error messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Literal::Null => "null",
            Literal::Bool(_) => "boolean",
            Literal::Str(_) => "string",
            Literal::Number(_) => "number",
            Literal::Date(_) => "date",
            Literal::DateTime(_) => "dateTime",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    /// A keyword or field name.
    Word(String),
    Str(String),
    /// An unquoted literal starting with a digit or a sign: number, date or datetime.
    Bare(String),
    Comma,
    Open,
    Close,
    Op(Op),
}

/// Why a query does not parse; the text is Salesforce's kind of message.
pub(crate) type ParseError = String;

fn tokenize(text: &str) -> Result<Vec<Token>, ParseError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            _ if c.is_whitespace() => i += 1,
            ',' => {
                tokens.push(Token::Comma);
                i += 1;
            }
            '(' => {
                tokens.push(Token::Open);
                i += 1;
            }
            ')' => {
                tokens.push(Token::Close);
                i += 1;
            }
            '=' => {
                tokens.push(Token::Op(Op::Eq));
                i += 1;
            }
            '!' | '<' | '>' => {
                let next = chars.get(i + 1).copied();
                let (op, len) = match (c, next) {
                    ('!', Some('=')) => (Op::Ne, 2),
                    ('<', Some('>')) => (Op::Ne, 2),
                    ('<', Some('=')) => (Op::Le, 2),
                    ('>', Some('=')) => (Op::Ge, 2),
                    ('<', _) => (Op::Lt, 1),
                    ('>', _) => (Op::Gt, 1),
                    _ => return Err(format!("unexpected token: '{c}'")),
                };
                tokens.push(Token::Op(op));
                i += len;
            }
            '\'' => {
                let mut value = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("unterminated string literal".to_owned()),
                        Some('\\') => {
                            let escaped = chars.get(i + 1).ok_or("unterminated string literal")?;
                            value.push(match escaped {
                                'n' => '\n',
                                't' => '\t',
                                other => *other,
                            });
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(other) => {
                            value.push(*other);
                            i += 1;
                        }
                    }
                }
                tokens.push(Token::Str(value));
            }
            _ if c.is_ascii_digit() || c == '-' || c == '+' || c == '.' => {
                let begin = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], ':' | '.' | '+' | '-'))
                {
                    i += 1;
                }
                tokens.push(Token::Bare(chars[begin..i].iter().collect()));
            }
            _ if c.is_ascii_alphabetic() || c == '_' => {
                let begin = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | '.' | ':')) {
                    i += 1;
                }
                tokens.push(Token::Word(chars[begin..i].iter().collect()));
            }
            _ => return Err(format!("unexpected token: '{c}'")),
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn keyword(&mut self, word: &str) -> bool {
        match self.peek() {
            Some(Token::Word(w)) if w.eq_ignore_ascii_case(word) => {
                self.at += 1;
                true
            }
            _ => false,
        }
    }

    fn expect_keyword(&mut self, word: &str) -> Result<(), ParseError> {
        if self.keyword(word) { Ok(()) } else { Err(format!("expecting '{word}', found {}", self.describe_next())) }
    }

    fn describe_next(&self) -> String {
        match self.peek() {
            None => "end of query".to_owned(),
            Some(Token::Word(w) | Token::Bare(w)) => format!("'{w}'"),
            Some(Token::Str(s)) => format!("'{s}'"),
            Some(other) => format!("{other:?}"),
        }
    }

    fn field(&mut self) -> Result<String, ParseError> {
        match self.next() {
            Some(Token::Word(w)) if !is_reserved(&w) => Ok(w),
            _ => {
                self.at -= 1;
                Err(format!("unexpected token: {}", self.describe_next()))
            }
        }
    }

    fn literal(&mut self) -> Result<Literal, ParseError> {
        match self.next() {
            Some(Token::Str(s)) => Ok(Literal::Str(s)),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("true") => Ok(Literal::Bool(true)),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("false") => Ok(Literal::Bool(false)),
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("null") => Ok(Literal::Null),
            Some(Token::Bare(text)) => bare_literal(&text),
            Some(Token::Word(w)) => {
                Err(format!("unexpected token: '{w}' (date literals like TODAY are not supported by the fake)"))
            }
            other => Err(format!("unexpected token: {other:?}")),
        }
    }
}

/// A number, a date `YYYY-MM-DD` or a datetime `YYYY-MM-DDThh:mm:ss[.fff](Z|±hh:mm|±hhmm)`.
fn bare_literal(text: &str) -> Result<Literal, ParseError> {
    if text.len() >= 10 && text.as_bytes()[4] == b'-' && text.as_bytes()[7] == b'-' {
        if text.len() == 10 {
            return Date::parse(text).map(Literal::Date).ok_or_else(|| format!("invalid date: {text}"));
        }
        return parse_datetime(text).map(Literal::DateTime).ok_or_else(|| format!("invalid dateTime: {text}"));
    }
    text.parse::<f64>().map(Literal::Number).map_err(|_| format!("unexpected token: '{text}'"))
}

/// A SOQL datetime literal: it must carry a zone (`Z` or an offset, with or without a colon).
pub(crate) fn parse_datetime(text: &str) -> Option<Timestamp> {
    let zone_start = text.rfind(['Z', '+', '-']).filter(|&i| i > 10)?;
    let zone = &text[zone_start..];
    let normalized = if zone == "Z" || zone.contains(':') {
        text.to_owned()
    } else if zone.len() == 5 {
        format!("{}{}:{}", &text[..zone_start], &zone[..3], &zone[3..])
    } else {
        return None;
    };
    Timestamp::parse_rfc3339(&normalized)
}

fn is_reserved(word: &str) -> bool {
    ["SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "ORDER", "BY", "LIMIT", "IN", "ASC", "DESC", "NULLS", "GROUP"]
        .iter()
        .any(|k| k.eq_ignore_ascii_case(word))
}

/// Parses one query.
pub(crate) fn parse(text: &str) -> Result<Soql, ParseError> {
    let mut p = Parser { tokens: tokenize(text)?, at: 0 };
    p.expect_keyword("SELECT")?;
    let mut fields = vec![p.field()?];
    while p.peek() == Some(&Token::Comma) {
        p.at += 1;
        fields.push(p.field()?);
    }
    if p.peek() == Some(&Token::Open) {
        return Err("sub-queries and functions are not supported by the fake".to_owned());
    }
    p.expect_keyword("FROM")?;
    let object = p.field()?;
    let mut conditions = Vec::new();
    if p.keyword("WHERE") {
        loop {
            let field = p.field()?;
            let condition = if p.keyword("IN") {
                if p.next() != Some(Token::Open) {
                    return Err("expecting '(' after IN".to_owned());
                }
                let mut values = vec![p.literal()?];
                loop {
                    match p.next() {
                        Some(Token::Comma) => values.push(p.literal()?),
                        Some(Token::Close) => break,
                        _ => return Err("expecting ',' or ')' in IN list".to_owned()),
                    }
                }
                Condition { field, op: Op::In, values }
            } else {
                let op = match p.next() {
                    Some(Token::Op(op)) => op,
                    _ => {
                        p.at -= 1;
                        return Err(format!("expecting a comparison operator, found {}", p.describe_next()));
                    }
                };
                Condition { field, op, values: vec![p.literal()?] }
            };
            conditions.push(condition);
            if p.keyword("AND") {
                continue;
            }
            if p.keyword("OR") {
                return Err("OR is not supported by the fake".to_owned());
            }
            break;
        }
    }
    let mut order = None;
    if p.keyword("ORDER") {
        p.expect_keyword("BY")?;
        let field = p.field()?;
        let ascending = if p.keyword("DESC") {
            false
        } else {
            p.keyword("ASC");
            true
        };
        // SOQL's default: nulls first when ascending, last when descending.
        let mut nulls_first = ascending;
        if p.keyword("NULLS") {
            if p.keyword("FIRST") {
                nulls_first = true;
            } else {
                p.expect_keyword("LAST")?;
                nulls_first = false;
            }
        }
        order = Some((field, ascending, nulls_first));
    }
    let mut limit = None;
    if p.keyword("LIMIT") {
        match p.next() {
            Some(Token::Bare(n)) => limit = Some(n.parse().map_err(|_| format!("invalid LIMIT: {n}"))?),
            _ => return Err("expecting a number after LIMIT".to_owned()),
        }
    }
    if p.peek().is_some() {
        return Err(format!("unexpected token: {}", p.describe_next()));
    }
    Ok(Soql { fields, object, conditions, order, limit })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_query_shapes() {
        let q = parse(
            "SELECT Id, OwnerId,Amount, Owner.Email FROM Opportunity WHERE IsWon = true AND \
             SystemModstamp > 2025-06-01T00:00:00Z ORDER BY SystemModstamp ASC",
        )
        .unwrap();
        assert_eq!(q.fields, ["Id", "OwnerId", "Amount", "Owner.Email"]);
        assert_eq!(q.object, "Opportunity");
        assert_eq!(q.conditions.len(), 2);
        assert_eq!(q.conditions[0].values, [Literal::Bool(true)]);
        assert_eq!(q.conditions[1].op, Op::Gt);
        assert_eq!(
            q.conditions[1].values,
            [Literal::DateTime(Timestamp::parse_rfc3339("2025-06-01T00:00:00Z").unwrap())]
        );
        assert_eq!(q.order, Some(("SystemModstamp".to_owned(), true, true)));

        let q = parse(
            "select id from task where TaskSubtype = 'Call' and ActivityDate >= 2025-06-01 \
                       and CreatedDate < 2025-06-02T10:00:00.000+0200 and Status IN ('A', 'B\\'s') limit 5",
        )
        .unwrap();
        assert_eq!(q.conditions[0].values, [Literal::Str("Call".to_owned())]);
        assert_eq!(q.conditions[1].values, [Literal::Date(Date::parse("2025-06-01").unwrap())]);
        assert_eq!(
            q.conditions[2].values,
            [Literal::DateTime(Timestamp::parse_rfc3339("2025-06-02T08:00:00Z").unwrap())]
        );
        assert_eq!(q.conditions[3].values, [Literal::Str("A".to_owned()), Literal::Str("B's".to_owned())]);
        assert_eq!(q.limit, Some(5));
    }

    #[test]
    fn refuses_what_it_does_not_understand() {
        for bad in [
            "SELECT FROM Opportunity",
            "SELECT Id Opportunity",
            "SELECT Id FROM Opportunity WHERE IsWon = true OR IsClosed = true",
            "SELECT Id FROM Opportunity WHERE SystemModstamp > 2025-06-01T00:00:00",
            "SELECT Id FROM Opportunity WHERE Name = 'open",
            "SELECT COUNT() FROM Opportunity",
            "SELECT Id FROM Opportunity WHERE CloseDate = TODAY",
            "SELECT Id FROM Opportunity LIMIT x",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
