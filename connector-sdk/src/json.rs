//! Helpers for reading CRM answers as JSON with serde, borrowing from the body instead of
//! allocating per record.
//!
//! * [`Text`] is a string field that borrows from the body when it can (no escapes) and
//!   owns a copy only when it must.
//! * [`CursorPage`] and [`OffsetPage`] are the envelopes of cursor-paged and offset-paged
//!   lists (`{"data": [...], "additional_data": {...}}`, as Pipedrive sends them), for use
//!   with [`crate::Ctx::get_cursor_paged`] and [`crate::Ctx::get_offset_paged`].
//! * [`crate::Decimal`] (in [`crate::money`]) reads an amount exactly.
//! * [`skim`] is a deserializer for large pages: the same types and answers as
//!   `serde_json`, but fields a type ignores are only checked, not read
//!   ([`crate::HttpResponse::skim_json`]).

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;

use serde::de::{self, Deserialize, Deserializer, Visitor};

pub mod skim;

/// A JSON string field that borrows from the body where it can.
///
/// `&'a str` fails on a string with escapes, and `Cow<'a, str>` borrows only with
/// `#[serde(borrow)]` and not inside an `Option`; `Option<Text<'a>>` does both right.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Text<'a>(pub Cow<'a, str>);

impl<'a> Text<'a> {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for Text<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl PartialEq<str> for Text<'_> {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Text<'_> {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;

        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }

        deserializer.deserialize_str(TextVisitor)
    }
}

/// Reads a list that the CRM may also send as `null` (Pipedrive v1 does for empty lists).
fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

/// One page of a cursor-paged list: `{"data": [...], "additional_data": {"next_cursor": …}}`
/// (Pipedrive API v2). The list ends when `next_cursor` is `null` or absent.
#[derive(Debug, PartialEq, serde::Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub struct CursorPage<T> {
    /// The records of this page.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub data: Vec<T>,
    #[serde(default)]
    additional_data: Option<CursorData>,
}

#[derive(Debug, PartialEq, serde::Deserialize)]
struct CursorData {
    #[serde(default)]
    next_cursor: Option<String>,
}

impl<T> CursorPage<T> {
    /// The cursor of the next page, or `None` on the last page.
    pub fn next_cursor(&self) -> Option<&str> {
        self.additional_data.as_ref()?.next_cursor.as_deref().filter(|c| !c.is_empty())
    }
}

/// One page of an offset-paged list: `{"data": [...], "additional_data": {"pagination":
/// {"more_items_in_collection": …, "next_start": …}}}` (Pipedrive API v1).
#[derive(Debug, serde::Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub struct OffsetPage<T> {
    /// The records of this page.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub data: Vec<T>,
    #[serde(default)]
    additional_data: Option<OffsetData>,
}

#[derive(Debug, serde::Deserialize)]
struct OffsetData {
    #[serde(default)]
    pagination: Option<Pagination>,
}

#[derive(Debug, serde::Deserialize)]
struct Pagination {
    #[serde(default)]
    more_items_in_collection: bool,
    #[serde(default)]
    next_start: Option<u64>,
}

impl<T> OffsetPage<T> {
    /// The offset of the next page, or `None` on the last page.
    pub fn next_start(&self) -> Option<u64> {
        let pagination = self.additional_data.as_ref()?.pagination.as_ref()?;
        if pagination.more_items_in_collection { pagination.next_start } else { None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_borrows_unless_escaped() {
        #[derive(serde::Deserialize)]
        struct Row<'a> {
            #[serde(borrow)]
            a: Option<Text<'a>>,
            #[serde(borrow)]
            b: Option<Text<'a>>,
            #[serde(borrow)]
            c: Option<Text<'a>>,
        }
        let body = br#"{"a": "won", "b": "caf\u00e9", "c": null}"#;
        let row: Row<'_> = serde_json::from_slice(body).unwrap();
        assert!(matches!(row.a, Some(Text(Cow::Borrowed("won")))));
        assert_eq!(row.b.as_deref(), Some("café"));
        assert!(row.c.is_none());
    }

    #[test]
    fn cursor_pages_end_on_a_null_cursor() {
        let page: CursorPage<u32> =
            serde_json::from_str(r#"{"data":[1,2],"additional_data":{"next_cursor":"abc"}}"#).unwrap();
        assert_eq!(page.data, [1, 2]);
        assert_eq!(page.next_cursor(), Some("abc"));
        let last: CursorPage<u32> =
            serde_json::from_str(r#"{"data":null,"additional_data":{"next_cursor":null}}"#).unwrap();
        assert!(last.data.is_empty());
        assert_eq!(last.next_cursor(), None);
        let bare: CursorPage<u32> = serde_json::from_str(r#"{"success":true}"#).unwrap();
        assert_eq!(bare.next_cursor(), None);
    }

    #[test]
    fn offset_pages_follow_more_items() {
        let page: OffsetPage<u32> = serde_json::from_str(
            r#"{"data":[1],"additional_data":{"pagination":{"start":0,"limit":1,
               "more_items_in_collection":true,"next_start":1}}}"#,
        )
        .unwrap();
        assert_eq!(page.next_start(), Some(1));
        let last: OffsetPage<u32> =
            serde_json::from_str(r#"{"data":[1],"additional_data":{"pagination":{"more_items_in_collection":false}}}"#)
                .unwrap();
        assert_eq!(last.next_start(), None);
    }
}
