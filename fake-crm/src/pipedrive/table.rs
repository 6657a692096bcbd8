//! An in-memory table with the ordered indexes that keyset paging needs.
//!
//! Rows are kept sorted by id (new rows get ever larger ids, and nothing is ever removed:
//! deletion is a flag). Every other sortable field has a `BTreeSet<(key, id)>` index, updated
//! whenever a row changes, so that a page starting after a cursor costs O(log n + page) rather
//! than a scan of all rows. That keeps a 500-deal page cheap with 100k deals.

use std::collections::BTreeSet;
use std::ops::Bound;

use super::model::{Activity, Deal, Organization, Person};

/// A field a list can be sorted by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SortField {
    Id,
    UpdateTime,
    AddTime,
    DueDate,
}

impl SortField {
    /// The API's name for it, as in `sort_by` and in cursors.
    pub(crate) fn name(self) -> &'static str {
        match self {
            SortField::Id => "id",
            SortField::UpdateTime => "update_time",
            SortField::AddTime => "add_time",
            SortField::DueDate => "due_date",
        }
    }

    /// Parses a `sort_by` value.
    pub(crate) fn parse(name: &str) -> Option<Self> {
        [SortField::Id, SortField::UpdateTime, SortField::AddTime, SortField::DueDate]
            .into_iter()
            .find(|f| f.name() == name)
    }
}

/// A row that can live in a [`Table`].
pub(crate) trait Record {
    /// The fields this record type can be sorted by, `Id` first.
    const SORT_FIELDS: &'static [SortField];
    /// Its id.
    fn id(&self) -> u64;
    /// Its sort key for `field` (seconds for times, days for dates, the id for `Id`).
    fn key(&self, field: SortField) -> i64;
    /// Its last change, for `updated_since` / `updated_until`.
    fn updated(&self) -> i64 {
        self.key(SortField::UpdateTime)
    }
}

/// Records listed by id, `update_time` or `add_time` (deals, persons, organisations).
macro_rules! record_by_times {
    ($($ty:ty),*) => {$(
        impl Record for $ty {
            const SORT_FIELDS: &'static [SortField] = &[SortField::Id, SortField::UpdateTime, SortField::AddTime];
            fn id(&self) -> u64 {
                self.id
            }
            fn key(&self, field: SortField) -> i64 {
                match field {
                    SortField::UpdateTime => self.update_time.unix(),
                    SortField::AddTime => self.add_time.unix(),
                    SortField::Id | SortField::DueDate => self.id as i64,
                }
            }
        }
    )*};
}

record_by_times!(Deal, Person, Organization);

impl Record for Activity {
    const SORT_FIELDS: &'static [SortField] =
        &[SortField::Id, SortField::UpdateTime, SortField::AddTime, SortField::DueDate];
    fn id(&self) -> u64 {
        self.id
    }
    fn key(&self, field: SortField) -> i64 {
        match field {
            SortField::UpdateTime => self.update_time.unix(),
            SortField::AddTime => self.add_time.unix(),
            SortField::DueDate => i64::from(self.due_date.days()),
            SortField::Id => self.id as i64,
        }
    }
}

/// Where a scan starts and stops, in the order of one sort field.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Scan {
    /// Continue strictly after this `(key, id)` in the scan's direction (a cursor).
    pub(crate) after: Option<(i64, u64)>,
    /// Only keys `>= min` (inclusive).
    pub(crate) min: Option<i64>,
    /// Only keys `< max` (exclusive).
    pub(crate) max: Option<i64>,
    /// Largest key first.
    pub(crate) descending: bool,
}

/// Rows sorted by id, plus one ordered index per other sort field.
#[derive(Clone, Debug)]
pub(crate) struct Table<T> {
    rows: Vec<T>,
    indexes: Vec<(SortField, BTreeSet<(i64, u64)>)>,
}

impl<T: Record> Table<T> {
    /// Indexes `rows`. Panics on duplicate ids (a bug in whoever built them).
    pub(crate) fn new(mut rows: Vec<T>) -> Self {
        rows.sort_by_key(Record::id);
        assert!(rows.windows(2).all(|w| w[0].id() < w[1].id()), "record ids must be unique");
        let indexes = T::SORT_FIELDS
            .iter()
            .filter(|&&f| f != SortField::Id)
            .map(|&f| (f, rows.iter().map(|r| (r.key(f), r.id())).collect()))
            .collect();
        Self { rows, indexes }
    }

    /// All rows in id order.
    pub(crate) fn rows(&self) -> &[T] {
        &self.rows
    }

    /// Number of rows.
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    /// The largest id, if any.
    pub(crate) fn last_id(&self) -> Option<u64> {
        self.rows.last().map(Record::id)
    }

    fn position(&self, id: u64) -> Option<usize> {
        self.rows.binary_search_by_key(&id, Record::id).ok()
    }

    /// The row with this id.
    pub(crate) fn get(&self, id: u64) -> Option<&T> {
        self.position(id).map(|i| &self.rows[i])
    }

    /// Changes one row and keeps the indexes true. `None` if there is no such row.
    pub(crate) fn update<R>(&mut self, id: u64, change: impl FnOnce(&mut T) -> R) -> Option<R> {
        let i = self.position(id)?;
        let row = &mut self.rows[i];
        for (field, index) in &mut self.indexes {
            index.remove(&(row.key(*field), id));
        }
        let result = change(row);
        assert_eq!(row.id(), id, "a row's id must not change");
        for (field, index) in &mut self.indexes {
            index.insert((row.key(*field), id));
        }
        Some(result)
    }

    /// Appends a row whose id is larger than every other.
    pub(crate) fn push(&mut self, row: T) {
        assert!(self.last_id().is_none_or(|last| row.id() > last), "new rows must have the largest id");
        for (field, index) in &mut self.indexes {
            index.insert((row.key(*field), row.id()));
        }
        self.rows.push(row);
    }

    /// Rows in the order of `field`, ties broken by id, within `scan`'s bounds.
    pub(crate) fn scan(&self, field: SortField, scan: Scan) -> Box<dyn Iterator<Item = &T> + '_> {
        if field == SortField::Id {
            return self.scan_by_id(scan);
        }
        let Some((_, index)) = self.indexes.iter().find(|(f, _)| *f == field) else {
            return Box::new(std::iter::empty());
        };
        let lower = scan.min.map(|k| (k, 0));
        let upper = scan.max.map(|k| (k, 0));
        // Bounds on (key, id) pairs: ids start at 1, so (k, 0) sits just before every key k.
        let (mut lo, mut hi) =
            (lower.map_or(Bound::Unbounded, Bound::Included), upper.map_or(Bound::Unbounded, Bound::Excluded));
        if let Some(after) = scan.after {
            if scan.descending {
                if upper.is_none_or(|u| after < u) {
                    hi = Bound::Excluded(after);
                }
            } else if lower.is_none_or(|l| after >= l) {
                lo = Bound::Excluded(after);
            }
        }
        if is_empty_range(lo, hi) {
            return Box::new(std::iter::empty());
        }
        let keys = index.range((lo, hi));
        let rows = move |(_, id): &(i64, u64)| self.get(*id);
        if scan.descending { Box::new(keys.rev().filter_map(rows)) } else { Box::new(keys.filter_map(rows)) }
    }

    fn scan_by_id(&self, scan: Scan) -> Box<dyn Iterator<Item = &T> + '_> {
        let mut lo = scan.min.map_or(0, |m| self.rows.partition_point(|r| (r.id() as i64) < m));
        let mut hi = scan.max.map_or(self.rows.len(), |m| self.rows.partition_point(|r| (r.id() as i64) < m));
        if let Some((_, after)) = scan.after {
            if scan.descending {
                hi = hi.min(self.rows.partition_point(|r| r.id() < after));
            } else {
                lo = lo.max(self.rows.partition_point(|r| r.id() <= after));
            }
        }
        let rows = self.rows.get(lo..hi.max(lo)).unwrap_or(&[]);
        if scan.descending { Box::new(rows.iter().rev()) } else { Box::new(rows.iter()) }
    }
}

/// Whether `BTreeSet::range` would find nothing (it panics on such ranges instead).
fn is_empty_range(lo: Bound<(i64, u64)>, hi: Bound<(i64, u64)>) -> bool {
    match (lo, hi) {
        (Bound::Included(a), Bound::Included(b)) => a > b,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => a >= b,
        _ => false,
    }
}
