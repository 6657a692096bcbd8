//! The connector author's toolkit around `oneup connector check`: `--record DIR` (every HTTP
//! exchange of the run, secrets redacted: [`record`]), `--replay DIR` (the run offline,
//! answered from a recording: [`replay`]) and `--validate` (a conformance suite:
//! [`validate`]).
//!
//! All three work through one [`Transport`] wrapper handed to `Runtime::with_transport`:
//! it sees every request the runtime sends (the connector's GETs and the host's own token
//! and login calls), passes it to the network or to the recording, stores what came back,
//! and, for the suite, answers the k-th request of a sync itself (a 429, a 401) or stops a
//! sync that repeats itself.

pub mod record;
pub mod replay;
pub mod validate;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context as _;
use reqwest::header::{HeaderMap, HeaderValue};
use url::Url;

use self::record::{Caller, FORMAT, Index, MARKER, Recorder, Redactor};
use self::replay::{Recording, ReplayTransport};
use super::check::CheckArgs;
use crate::runtime::http::{Fetched, HttpFailure, ReqwestTransport, Transport};
use crate::runtime::manifest::Manifest;
use crate::runtime::{BoxFuture, LoadError, Runtime, RuntimeConfig};

/// What the toolkit flags asked for, and the transport that does it.
pub struct Toolkit {
    transport: Option<Arc<ToolkitTransport>>,
    redactor: Arc<Redactor>,
    record: Option<PathBuf>,
    validate: bool,
    max_requests: u64,
    /// The index written at the end of a recording: filled when the connector is loaded.
    index: Mutex<Option<Index>>,
}

impl Toolkit {
    /// Reads the flags; with `--replay`, reads the recording and completes `args` from it:
    /// its config where none is given, a placeholder for every secret it was made with
    /// (secrets are optional when replaying), and plain-http loopback URLs allowed (nothing
    /// is sent anywhere).
    pub fn prepare(args: &mut CheckArgs) -> anyhow::Result<Self> {
        anyhow::ensure!(
            args.record.is_none() || args.replay.is_none(),
            "--record and --replay cannot be combined: a replay sends nothing worth recording"
        );
        let mut recording = None;
        if let Some(dir) = &args.replay {
            let loaded = Recording::load(dir)?;
            for (key, value) in &loaded.index.config {
                if !args.config.iter().any(|(k, _)| k == key) {
                    args.config.push((key.clone(), value.clone()));
                }
            }
            for key in &loaded.index.secret_keys {
                if !args.secret.iter().any(|(k, _)| k == key) {
                    args.secret.push((key.clone(), MARKER.to_owned()));
                }
            }
            args.sandbox.allow_loopback_http = true;
            eprintln!(
                "replay: {} recorded exchanges of {} {} from {}; nothing is sent to the network",
                loaded.exchanges.len(),
                loaded.index.connector,
                loaded.index.version,
                dir.display()
            );
            recording = Some(loaded);
        }
        let redactor = Arc::new(Redactor::new(args.secret.iter().map(|(_, v)| v.as_str())));
        for (key, value) in &args.secret {
            if !value.is_empty() && value != MARKER && value.chars().count() < record::MIN_SUBSTRING_SECRET {
                eprintln!(
                    "warning: secret `{key}` is shorter than {} characters: recordings redact it only where a whole value equals it",
                    record::MIN_SUBSTRING_SECRET
                );
            }
        }
        let recorder = match &args.record {
            Some(dir) => Some(Recorder::create(dir, redactor.clone())?),
            None => None,
        };
        let active = recording.is_some() || recorder.is_some() || args.validate;
        let transport = if active {
            let (inner, replay): (Arc<dyn Transport>, _) = match &recording {
                Some(recording) => {
                    let replay = Arc::new(ReplayTransport::new(recording, redactor.clone()));
                    (replay.clone(), Some(replay))
                }
                None => {
                    let timeout = crate::runtime::http::HttpLimits::default().timeout;
                    (Arc::new(ReqwestTransport::new(timeout)?), None)
                }
            };
            Some(Arc::new(ToolkitTransport {
                inner,
                replay,
                recorder,
                redactor: redactor.clone(),
                run: Mutex::new(RunState::default()),
            }))
        } else {
            None
        };
        Ok(Self {
            transport,
            redactor,
            record: args.record.clone(),
            validate: args.validate,
            max_requests: args.max_requests,
            index: Mutex::new(None),
        })
    }

    /// The runtime: over the toolkit's transport when a toolkit flag is given, else the
    /// plain network one.
    pub fn runtime(&self, config: RuntimeConfig) -> anyhow::Result<Runtime> {
        match &self.transport {
            Some(transport) => Runtime::with_transport(config, transport.clone()),
            None => Runtime::new(config),
        }
    }

    /// After a load failure: with `--validate` it is the suite's first check failing (exit
    /// 1); otherwise a usage error (exit 2) as before.
    pub fn load_failed(&self, error: &LoadError) -> ExitCode {
        if !self.validate {
            return ExitCode::from(2);
        }
        validate::print_line(&validate::Verdict::fail(
            validate::DESCRIBE,
            format!("the component was refused: {error}"),
        ));
        println!("validate: 0 passed, 1 failed");
        ExitCode::from(1)
    }

    /// Learns the connector: where its base URL is (recorded paths are relative to it) and
    /// what the recording's index says.
    pub fn loaded(&self, manifest: &Manifest, config: &[(String, String)], secret_keys: &[(String, String)]) {
        let base = config.iter().find(|(k, _)| *k == manifest.base_url_key).and_then(|(_, v)| Url::parse(v).ok());
        self.redactor.set_base(base);
        *self.index.lock().unwrap_or_else(PoisonError::into_inner) = Some(Index {
            format: FORMAT,
            marker: MARKER.to_owned(),
            connector: manifest.id.clone(),
            version: manifest.version.clone(),
            contract: manifest.contract.clone(),
            base_url_key: manifest.base_url_key.clone(),
            config: config.iter().cloned().collect(),
            secret_keys: {
                let mut keys: Vec<String> = secret_keys.iter().map(|(k, _)| k.clone()).collect();
                keys.sort();
                keys.dedup();
                keys
            },
            exchanges: Vec::new(),
        });
    }

    /// Whether the conformance suite was asked for.
    pub fn validating(&self) -> bool {
        self.validate
    }

    /// The most requests one sync of the suite may make.
    pub fn max_requests(&self) -> u64 {
        self.max_requests
    }

    /// Starts counting a new call (a sync or the roster) with `plan`.
    pub(crate) fn begin(&self, plan: Plan) {
        if let Some(t) = &self.transport {
            let mut run = t.run.lock().unwrap_or_else(PoisonError::into_inner);
            let unmatched_before = t.replay.as_ref().map_or(0, |r| r.unmatched());
            *run = RunState { plan, unmatched_before, ..RunState::default() };
        }
    }

    /// What the call since [`Toolkit::begin`] sent.
    pub(crate) fn end(&self) -> RunLog {
        let Some(t) = &self.transport else {
            return RunLog::default();
        };
        let run = t.run.lock().unwrap_or_else(PoisonError::into_inner);
        let most_repeated = run.answered.iter().max_by_key(|(_, n)| **n).map(|(k, n)| (k.clone(), *n));
        RunLog {
            connector_requests: run.connector_requests,
            host_requests: run.host_requests,
            most_repeated,
            stopped: run.stopped.clone(),
            injected: run.injected,
            unmatched: t.replay.as_ref().map_or(0, |r| r.unmatched()) - run.unmatched_before,
        }
    }

    /// Ends the run: writes the recording's index; prints what the recording or the replay
    /// did, under the check's summary.
    pub fn finish(&self) -> anyhow::Result<()> {
        let Some(t) = &self.transport else {
            return Ok(());
        };
        if let Some(replay) = &t.replay {
            eprintln!(
                "  replay:      {} requests answered from the recording ({} matched up to their times), {} unmatched",
                replay.served(),
                replay.time_blind(),
                replay.unmatched()
            );
            if replay.unmatched() > 0 {
                eprintln!(
                    "               (unmatched requests were answered 404: the connector asked for something not recorded; record again)"
                );
            }
        }
        if let Some(recorder) = &t.recorder {
            let index = self.index.lock().unwrap_or_else(PoisonError::into_inner).clone();
            let index = index.context("the connector was never loaded, so there is nothing to record")?;
            let stored = recorder.finish(index)?;
            eprintln!(
                "  recorded:    {stored} exchanges in {} (secrets redacted as `{MARKER}`)",
                self.record.as_deref().unwrap_or(recorder.dir()).display()
            );
        }
        Ok(())
    }
}

/// What the suite's transport does to one sync.
#[derive(Debug, Clone, Default)]
pub(crate) struct Plan {
    /// Answer the connector's `n`-th request (from 1) once with this status instead of
    /// sending it (a 429 with `Retry-After: 0`, a 401).
    pub fault: Option<(u64, u16)>,
    /// Stop the sync (answer `508 Loop Detected`) once it made `max_requests` requests or
    /// repeated one request `max_repeats` times.
    pub guard: Option<Guard>,
}

/// The suite's bounds on one sync.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Guard {
    /// Requests per sync.
    pub max_requests: u64,
    /// Answers (2xx) to one identical request per sync.
    pub max_repeats: u32,
}

#[derive(Debug, Default)]
struct RunState {
    plan: Plan,
    connector_requests: u64,
    host_requests: u64,
    /// 2xx answers per request key.
    answered: HashMap<String, u32>,
    stopped: Option<String>,
    injected: bool,
    unmatched_before: u64,
}

/// What one sync or roster call sent, as the suite sees it.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunLog {
    /// The connector's GETs (the host's retries included).
    pub connector_requests: u64,
    /// The host's token and login calls.
    pub host_requests: u64,
    /// The request answered most often, and how often.
    pub most_repeated: Option<(String, u32)>,
    /// Why the guard stopped the sync, if it did.
    pub stopped: Option<String>,
    /// Whether the planned fault was answered.
    pub injected: bool,
    /// Requests a replay had no answer for.
    pub unmatched: u64,
}

/// The transport of the toolkit: see the module docs.
pub struct ToolkitTransport {
    inner: Arc<dyn Transport>,
    replay: Option<Arc<ReplayTransport>>,
    recorder: Option<Recorder>,
    redactor: Arc<Redactor>,
    run: Mutex<RunState>,
}

fn synthetic(status: u16, headers: &[(&'static str, &'static str)], body: serde_json::Value) -> Fetched {
    let mut map = HeaderMap::new();
    map.insert(reqwest::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (name, value) in headers {
        map.insert(*name, HeaderValue::from_static(value));
    }
    Fetched { status, headers: map, body: serde_json::to_vec(&body).unwrap_or_default() }
}

impl ToolkitTransport {
    /// The suite's decision before a connector's GET is sent: an answer of its own, or none.
    fn intercept(&self, key: &str) -> Option<Fetched> {
        let mut run = self.run.lock().unwrap_or_else(PoisonError::into_inner);
        run.connector_requests += 1;
        let n = run.connector_requests;
        if let Some((at, status)) = run.plan.fault
            && at == n
        {
            run.injected = true;
            let body = serde_json::json!({"error": "injected by oneup connector check --validate"});
            return Some(match status {
                429 => synthetic(429, &[("retry-after", "0")], body),
                other => synthetic(other, &[], body),
            });
        }
        let guard = run.plan.guard?;
        let repeats = run.answered.get(key).copied().unwrap_or(0);
        let reason = if n > guard.max_requests {
            Some(format!("more than {} requests in one sync", guard.max_requests))
        } else if repeats >= guard.max_repeats {
            let shown = key.split_once(' ').map(|(_, rest)| rest).unwrap_or(key);
            Some(format!("{shown} answered {repeats} times in one sync"))
        } else {
            None
        };
        let reason = reason?;
        run.stopped.get_or_insert(reason);
        Some(synthetic(
            508,
            &[],
            serde_json::json!({"error": "stopped by oneup connector check --validate: the sync does not terminate"}),
        ))
    }

    fn answered(&self, key: String, status: u16) {
        if (200..300).contains(&status) {
            let mut run = self.run.lock().unwrap_or_else(PoisonError::into_inner);
            *run.answered.entry(key).or_default() += 1;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn keep(&self, caller: Caller, method: &str, url: &Url, headers: &HeaderMap, body: &[u8], fetched: &Fetched) {
        if let Some(recorder) = &self.recorder {
            recorder.record(caller, method, url, headers, body, fetched.status, &fetched.headers, &fetched.body);
        }
    }
}

impl Transport for ToolkitTransport {
    fn send<'a>(
        &'a self,
        url: &'a Url,
        headers: &'a HeaderMap,
        max_body: usize,
    ) -> BoxFuture<'a, Result<Fetched, HttpFailure>> {
        Box::pin(async move {
            let key = self.redactor.key_of("GET", url);
            if let Some(answer) = self.intercept(&key) {
                return Ok(answer);
            }
            let fetched = self.inner.send(url, headers, max_body).await?;
            self.keep(Caller::Connector, "GET", url, headers, &[], &fetched);
            self.answered(key, fetched.status);
            Ok(fetched)
        })
    }

    fn send_with_body<'a>(
        &'a self,
        method: reqwest::Method,
        url: &'a Url,
        headers: &'a HeaderMap,
        body: Vec<u8>,
        max_body: usize,
    ) -> BoxFuture<'a, Result<Fetched, HttpFailure>> {
        Box::pin(async move {
            self.run.lock().unwrap_or_else(PoisonError::into_inner).host_requests += 1;
            let kept = body.clone();
            let fetched = self.inner.send_with_body(method.clone(), url, headers, body, max_body).await?;
            self.keep(Caller::Host, method.as_str(), url, headers, &kept, &fetched);
            Ok(fetched)
        })
    }
}
