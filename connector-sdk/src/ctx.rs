//! [`Ctx`], the handle a connector works through during a sync or a roster read: typed
//! helpers over the host's imports.

use serde::de::DeserializeOwned;

use crate::codes;
use crate::host::Host;
use crate::http::{HttpError, HttpRequest, HttpResponse};
use crate::types::{ConnectorError, Cursor, KpiChange, LogLevel, SnapshotWindow};

/// How many changes [`Ctx::push`] gathers before it hands them to the host, unless
/// [`Ctx::set_batch_size`] says otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 1000;

/// What a connector works with during a sync: settings, the clock, GETs with JSON decoding
/// and paging, a batching emitter, checkpoints and logs.
///
/// Every helper that fails returns a [`ConnectorError`] whose code is one of
/// [`crate::STANDARD_CODES`], so a connector can pass it on with `?`.
pub struct Ctx<'h> {
    host: &'h mut dyn Host,
    pending: Vec<KpiChange>,
    batch_size: usize,
    emitted: u64,
}

impl<'h> Ctx<'h> {
    /// A context over a host.
    pub fn new(host: &'h mut dyn Host) -> Self {
        Ctx { host, pending: Vec::new(), batch_size: DEFAULT_BATCH_SIZE, emitted: 0 }
    }

    /// A config value of the integration, or its declared default.
    pub fn config(&mut self, key: &str) -> Option<String> {
        self.host.config(key)
    }

    /// A config value that must be present and not blank, else [`codes::MISSING_CONFIG`].
    pub fn require_config(&mut self, key: &str) -> Result<String, ConnectorError> {
        match self.host.config(key) {
            Some(value) if !value.trim().is_empty() => Ok(value),
            _ => Err(ConnectorError::new(codes::MISSING_CONFIG)),
        }
    }

    /// The host's wall clock, in epoch milliseconds.
    pub fn now(&mut self) -> i64 {
        self.host.now()
    }

    /// Sends a request as it is and returns the host's answer, whatever its status. Use it
    /// when the connector needs the host's own [`HttpError`] or non-success answers.
    pub fn http_get(&mut self, request: &HttpRequest) -> Result<HttpResponse, HttpError> {
        self.host.http_get(request)
    }

    /// Sends a request and returns the answer if it is a success (2xx); otherwise the
    /// error of [`HttpResponse::status_error`] or of [`HttpError::code`].
    pub fn send(&mut self, request: &HttpRequest) -> Result<HttpResponse, ConnectorError> {
        let response = self.host.http_get(request)?;
        match response.status_error() {
            None => Ok(response),
            Some(error) => Err(error),
        }
    }

    /// GETs `path` with the query parameters and returns the answer if it is a success.
    pub fn get(&mut self, path: &str, query: &[(&str, &str)]) -> Result<HttpResponse, ConnectorError> {
        self.send(&HttpRequest::get(path).queries(query))
    }

    /// GETs `path` and decodes a successful answer as JSON into `T`. Use
    /// [`HttpResponse::json`] on the answer of [`Ctx::get`] for types that borrow from the
    /// body.
    pub fn get_json<T: DeserializeOwned>(&mut self, path: &str, query: &[(&str, &str)]) -> Result<T, ConnectorError> {
        self.get(path, query)?.json()
    }

    /// Reads a cursor-paged list: GETs `path` with the query, hands each successful answer
    /// to `on_page`, which processes it and returns the next page's cursor (see
    /// [`crate::json::CursorPage::next_cursor`]), and GETs the next page with the query
    /// parameter `cursor` set to it, until `on_page` returns `None`. A page that names the
    /// cursor it was fetched with as the next one ends the read with [`codes::BAD_JSON`].
    pub fn get_cursor_paged<F>(
        &mut self,
        path: &str,
        query: &[(&str, &str)],
        mut on_page: F,
    ) -> Result<(), ConnectorError>
    where
        F: FnMut(&mut Self, &HttpResponse) -> Result<Option<String>, ConnectorError>,
    {
        let first = HttpRequest::get(path).queries(query);
        let mut page = self.send(&first)?;
        let mut previous: Option<String> = None;
        while let Some(cursor) = on_page(self, &page)? {
            if previous.as_deref() == Some(cursor.as_str()) {
                // The same cursor twice would loop until the sync's deadline.
                return Err(ConnectorError::with_status(codes::BAD_JSON, page.status));
            }
            page = self.send(&first.clone().query("cursor", &cursor))?;
            previous = Some(cursor);
        }
        Ok(())
    }

    /// Reads an offset-paged list: GETs `path` with the query and `start=0&limit=<limit>`,
    /// hands each successful answer to `on_page`, which processes it and returns the next
    /// page's offset (see [`crate::json::OffsetPage::next_start`]), and GETs the next page
    /// with `start` set to it, until `on_page` returns `None`. An offset that does not
    /// advance ends the read with [`codes::BAD_JSON`].
    pub fn get_offset_paged<F>(
        &mut self,
        path: &str,
        query: &[(&str, &str)],
        limit: u32,
        mut on_page: F,
    ) -> Result<(), ConnectorError>
    where
        F: FnMut(&mut Self, &HttpResponse) -> Result<Option<u64>, ConnectorError>,
    {
        let base = HttpRequest::get(path).queries(query).query("limit", &limit.to_string());
        let mut start = 0u64;
        loop {
            let request = base.clone().query("start", &start.to_string());
            let response = self.send(&request)?;
            match on_page(self, &response)? {
                Some(next) if next > start => start = next,
                Some(_) => return Err(ConnectorError::new(codes::BAD_JSON)),
                None => return Ok(()),
            }
        }
    }

    /// Adds a change to the pending batch and hands the batch to the host once it holds
    /// the batch size (see [`Ctx::set_batch_size`]).
    pub fn push(&mut self, change: KpiChange) -> Result<(), ConnectorError> {
        self.pending.push(change);
        if self.pending.len() >= self.batch_size {
            self.flush()?;
        }
        Ok(())
    }

    /// Hands the pending changes, if any, to the host as one batch.
    pub fn flush(&mut self) -> Result<(), ConnectorError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let result = self.host.emit(&self.pending);
        let count = self.pending.len() as u64;
        self.pending.clear();
        result.map_err(|_| ConnectorError::new(codes::EMIT_REFUSED))?;
        self.emitted += count;
        Ok(())
    }

    /// Hands `batch` to the host as one batch, as it is, after the pending changes.
    pub fn emit(&mut self, batch: &[KpiChange]) -> Result<(), ConnectorError> {
        self.flush()?;
        if batch.is_empty() {
            return Ok(());
        }
        self.host.emit(batch).map_err(|_| ConnectorError::new(codes::EMIT_REFUSED))?;
        self.emitted += batch.len() as u64;
        Ok(())
    }

    /// Sets how many changes [`Ctx::push`] gathers per batch (at least 1).
    pub fn set_batch_size(&mut self, size: usize) {
        self.batch_size = size.max(1);
    }

    /// How many changes the host has accepted from this context so far.
    pub fn changes_emitted(&self) -> u64 {
        self.emitted
    }

    /// Records where the next sync resumes, after handing the pending changes to the host:
    /// everything emitted so far commits with it.
    pub fn checkpoint(&mut self, cursor: &Cursor) -> Result<(), ConnectorError> {
        self.flush()?;
        self.host.checkpoint(cursor).map_err(|_| ConnectorError::new(codes::EMIT_REFUSED))
    }

    /// Opens a snapshot, after handing the pending changes to the host: the upserts pushed
    /// from now until [`Ctx::snapshot_end`] must be *every* fact of `window.metrics` whose
    /// time falls in the window. When the commit after `snapshot_end` is made, the host
    /// retracts the stored facts of that window it did not see; a sync that fails or ends
    /// with the snapshot open retracts nothing. Use it for CRMs that hard-delete records
    /// without a delete feed; read the whole window between the two calls.
    pub fn snapshot_begin(&mut self, window: &SnapshotWindow) -> Result<(), ConnectorError> {
        self.flush()?;
        self.host.snapshot_begin(window).map_err(|_| ConnectorError::new(codes::EMIT_REFUSED))
    }

    /// Closes the open snapshot, after handing the pending changes to the host. Checkpoint
    /// afterwards so the retractions are committed with the cursor.
    pub fn snapshot_end(&mut self) -> Result<(), ConnectorError> {
        self.flush()?;
        self.host.snapshot_end().map_err(|_| ConnectorError::new(codes::EMIT_REFUSED))
    }

    /// A structured log event: a declared code and numeric fields whose names are declared
    /// codes too. The host drops events with an undeclared code.
    pub fn log(&mut self, level: LogLevel, code: &str, fields: &[(&str, i64)]) {
        self.host.log(level, code, fields);
    }

    /// Free-text debug output: shown by `oneup connector check`, dropped in production.
    pub fn debug(&mut self, message: &str) {
        self.host.debug(message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::{CursorPage, OffsetPage};
    use crate::testing::FakeHost;

    #[test]
    fn a_cursor_that_repeats_ends_the_read() {
        let mut host = FakeHost::new();
        host.respond_json("/l", &[], r#"{"data":[1],"additional_data":{"next_cursor":"a"}}"#);
        host.respond_json("/l", &[("cursor", "a")], r#"{"data":[2],"additional_data":{"next_cursor":"a"}}"#);
        let mut ctx = Ctx::new(&mut host);
        let mut seen = Vec::new();
        let result = ctx.get_cursor_paged("/l", &[], |_, response| {
            let page: CursorPage<u32> = response.json()?;
            seen.extend(page.data.iter().copied());
            Ok(page.next_cursor().map(str::to_owned))
        });
        assert_eq!(result, Err(ConnectorError::with_status(codes::BAD_JSON, 200)));
        assert_eq!(seen, [1, 2]);
    }

    #[test]
    fn offset_pages_are_read_until_the_last() {
        let mut host = FakeHost::new();
        let more = |next: u32| {
            format!(
                r#"{{"data":[{next}],"additional_data":{{"pagination":{{"more_items_in_collection":true,"next_start":{next}}}}}}}"#
            )
        };
        host.respond_json("/u", &[("limit", "1"), ("start", "0")], &more(1));
        host.respond_json("/u", &[("limit", "1"), ("start", "1")], &more(2));
        host.respond_json("/u", &[("limit", "1"), ("start", "2")], r#"{"data":[3]}"#);
        let mut ctx = Ctx::new(&mut host);
        let mut seen = Vec::new();
        ctx.get_offset_paged("/u", &[], 1, |_, response| {
            let page: OffsetPage<u32> = response.json()?;
            seen.extend(page.data.iter().copied());
            Ok(page.next_start())
        })
        .unwrap();
        assert_eq!(seen, [1, 2, 3]);

        let mut stuck = FakeHost::new();
        stuck.respond_json("/u", &[("limit", "1"), ("start", "0")], &more(0));
        let result = Ctx::new(&mut stuck)
            .get_offset_paged("/u", &[], 1, |_, response| Ok(response.json::<OffsetPage<u32>>()?.next_start()));
        assert_eq!(result, Err(ConnectorError::new(codes::BAD_JSON)));
    }

    #[test]
    fn pushes_are_batched_and_checkpoints_flush_first() {
        let mut host = FakeHost::new();
        let mut ctx = Ctx::new(&mut host);
        ctx.set_batch_size(2);
        for id in 0..5u64 {
            ctx.push(KpiChange::retract("m", id)).unwrap();
        }
        ctx.checkpoint(&Cursor::new().with("k", 1)).unwrap();
        ctx.emit(&[KpiChange::retract("m", 9u64)]).unwrap();
        assert_eq!(ctx.changes_emitted(), 6);
        assert_eq!(host.batch_sizes(), [2, 2, 1, 1]);
        assert_eq!(host.checkpoints().len(), 1);
    }

    #[test]
    fn missing_and_blank_config_is_missing_config() {
        let mut host = FakeHost::new().with_config("blank", " ").with_config("set", "x");
        let mut ctx = Ctx::new(&mut host);
        assert_eq!(ctx.require_config("set").as_deref(), Ok("x"));
        for key in ["blank", "absent"] {
            assert_eq!(ctx.require_config(key), Err(ConnectorError::new(codes::MISSING_CONFIG)));
        }
    }
}
