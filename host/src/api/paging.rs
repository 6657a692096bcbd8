//! Paging of lists: `limit` (1 to 200, default 50) and an opaque `cursor` from the
//! previous page's `next_cursor`. Lists run newest first; the cursor is the position after
//! the last listed item (its creation time and id), so pages neither skip nor repeat items
//! when others are added meanwhile.

use serde::Deserialize;
use uuid::Uuid;

use super::error::ApiError;
use crate::store::engine::PageAfter;

/// The default page size.
pub(super) const DEFAULT_LIMIT: u32 = 50;
/// The largest page size.
pub(super) const MAX_LIMIT: u32 = 200;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct PageQuery {
    /// How many items at most, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
    /// Where to go on: the `next_cursor` of the previous page.
    cursor: Option<String>,
}

impl PageQuery {
    /// The checked limit and position: 400 when `limit` is out of range or the cursor is
    /// not one this API gave.
    pub(super) fn parse(&self) -> Result<(u32, Option<PageAfter>), ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::bad_request("invalid_query", format!("`limit` must be between 1 and {MAX_LIMIT}")));
        }
        let after = self.cursor.as_deref().map(decode).transpose()?;
        Ok((limit, after))
    }
}

/// The cursor after an item.
pub(super) fn encode(created_at_ms: i64, id: Uuid) -> String {
    format!("{created_at_ms:x}-{}", id.simple())
}

fn decode(cursor: &str) -> Result<PageAfter, ApiError> {
    let bad = || ApiError::bad_request("invalid_cursor", "`cursor` is not a cursor this API gave");
    let (at, id) = cursor.split_once('-').ok_or_else(bad)?;
    let created_at_ms = i64::from_str_radix(at, 16).map_err(|_| bad())?;
    let id = Uuid::try_parse(id).map_err(|_| bad())?;
    Ok(PageAfter { created_at_ms, id })
}

/// Cuts a page fetched with `limit + 1` items to `limit` and gives the next cursor when
/// there is more.
pub(super) fn finish<T>(mut items: Vec<T>, limit: u32, key: impl Fn(&T) -> (i64, Uuid)) -> (Vec<T>, Option<String>) {
    if items.len() > limit as usize {
        items.truncate(limit as usize);
        let (at, id) = key(items.last().expect("a full page"));
        (items, Some(encode(at, id)))
    } else {
        (items, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_bad_ones_are_refused() {
        let id = Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0);
        let after = decode(&encode(1_750_000_000_123, id)).unwrap();
        assert_eq!(after, PageAfter { created_at_ms: 1_750_000_000_123, id });
        for bad in ["", "x", "12", "zz-0123", "12-notauuid", "-"] {
            assert_eq!(decode(bad).unwrap_err().status().as_u16(), 400, "{bad}");
        }
        let q = |limit: Option<u32>| PageQuery { limit, cursor: None }.parse().map(|(l, _)| l).map_err(|e| e.code());
        assert_eq!(q(None), Ok(50));
        assert_eq!(q(Some(1)), Ok(1));
        assert_eq!(q(Some(200)), Ok(200));
        assert_eq!(q(Some(0)), Err("invalid_query"));
        assert_eq!(q(Some(201)), Err("invalid_query"));
    }

    #[test]
    fn a_page_longer_than_the_limit_is_cut_with_a_cursor() {
        let items: Vec<(i64, Uuid)> = (0..4).map(|i| (100 - i, Uuid::from_u128(i as u128))).collect();
        let (page, next) = finish(items.clone(), 3, |x| *x);
        assert_eq!(page, items[..3]);
        assert_eq!(next, Some(encode(98, Uuid::from_u128(2))));
        let (page, next) = finish(items.clone(), 4, |x| *x);
        assert_eq!((page.len(), next), (4, None));
    }
}
