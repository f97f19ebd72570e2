//! Starting the NATS thread: a current-thread tokio runtime of its own, so
//! the client's tasks are always polled, whatever the actix arbiters do.
//! It connects (the credentials given to the client apart from the
//! addresses, so that they never reach a log), checks that no live node
//! holds this node's id when NATS answers at the first try, subscribes to
//! the node's own subjects, then hands the thread to its two tasks: the
//! outbox (`outbox.rs`) and the engine (`engine.rs`).
//!
//! Not here: anything done once the node runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_nats::connection::State;
use async_nats::{Client, ConnectOptions, Event, HeaderMap, ServerAddr};
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::engine::Engine;
use crate::feed::Feed;
use crate::inbox::Inbox;
use crate::outbox;
use crate::settings::redact;
use crate::shared::{Cmd, Outgoing, Shared};
use crate::stored::FeedCmd;
use crate::wire::{HEADER, Kind, Meta};
use gateway_history::stream::SetupError;

/// Messages a subscription may hold before the client drops them.
const SUBSCRIPTION_CAPACITY: usize = 65_536;
/// The longest wait between two tries to reach NATS.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// At start, how long to wait for a first connection that is under way
/// (not refused), and for the node-id probe's answer.
const START_CHECK: Duration = Duration::from_secs(5);

/// A start that cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Another live node holds this node's id.
    #[error("node id `{0}` is already held by a live node of this cluster")]
    DuplicateNodeId(String),
    /// The history stream exists with other limits than the flags say.
    #[error("{0}")]
    HistoryStream(String),
    /// The NATS thread could not start.
    #[error("cannot start the cluster: {0}")]
    Internal(String),
}

/// Starts the NATS thread and waits for it to be under way.
pub fn spawn(
    shared: Arc<Shared>,
    cmds: mpsc::UnboundedReceiver<Cmd>,
    outbox: mpsc::UnboundedReceiver<Outgoing>,
    feed: Option<mpsc::UnboundedReceiver<FeedCmd>>,
) -> Result<(), StartError> {
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let bound = START_CHECK * 2 + shared.settings.timeout + Duration::from_secs(5);
    std::thread::Builder::new()
        .name("nats".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(err) => {
                    let _ = started_tx.send(Err(StartError::Internal(err.to_string())));
                    return;
                }
            };
            runtime.block_on(run(shared, cmds, outbox, feed, started_tx));
        })
        .map_err(|err| StartError::Internal(err.to_string()))?;
    match started_rx.recv_timeout(bound) {
        Ok(result) => result,
        Err(_) => Err(StartError::Internal("the NATS thread did not start".into())),
    }
}

/// The pause before the next try, after `failed` tries failed in a row.
fn backoff(failed: usize) -> Duration {
    let exp = failed.min(6) as u32;
    (Duration::from_millis(50) * 2u32.pow(exp)).min(MAX_BACKOFF)
}

/// How the client proves who it is.
#[derive(Debug, PartialEq, Eq)]
enum Auth {
    UserPassword(String, String),
    Token(String),
}

/// The credentials of the first URL that has them.
fn credentials(urls: &[String]) -> Option<Auth> {
    urls.iter().find_map(|url| {
        let (auth, _) = url.strip_prefix("nats://")?.rsplit_once('@')?;
        Some(match auth.split_once(':') {
            Some((user, pass)) => Auth::UserPassword(user.to_owned(), pass.to_owned()),
            None => Auth::Token(auth.to_owned()),
        })
    })
}

/// A URL without its credentials: `nats://host:port`.
fn without_credentials(url: &str) -> String {
    let rest = url.strip_prefix("nats://").unwrap_or(url);
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    format!("nats://{host}")
}

fn options(
    shared: &Shared,
    events: mpsc::UnboundedSender<Event>,
    failures: Arc<AtomicUsize>,
) -> ConnectOptions {
    let options = match credentials(&shared.settings.urls) {
        Some(Auth::UserPassword(user, pass)) => ConnectOptions::with_user_and_password(user, pass),
        Some(Auth::Token(token)) => ConnectOptions::with_token(token),
        None => ConnectOptions::new(),
    };
    let urls: Vec<String> = shared.settings.urls.iter().map(|u| redact(u)).collect();
    let urls = urls.join(",");
    options
        .no_echo()
        .retry_on_initial_connect()
        .max_reconnects(None)
        .name(format!("gateway {}", shared.node()))
        .subscription_capacity(SUBSCRIPTION_CAPACITY)
        .ping_interval(Duration::from_secs(5))
        .connection_timeout(shared.settings.timeout.max(Duration::from_millis(500)))
        .reconnect_delay_callback(move |attempts| {
            // Called before each try; `attempts` counts this one.
            let failed = attempts.saturating_sub(1);
            failures.store(failed, Ordering::SeqCst);
            if failed == 0 {
                return Duration::ZERO;
            }
            let delay = backoff(failed);
            tracing::warn!(
                nats = %urls,
                failed_attempts = failed,
                next_try_ms = delay.as_millis() as u64,
                "NATS not reachable"
            );
            delay
        })
        .event_callback(move |event| {
            let events = events.clone();
            async move {
                let _ = events.send(event);
            }
        })
}

/// The server addresses, without credentials (given to the client apart).
fn addresses(shared: &Shared) -> Result<Vec<ServerAddr>, StartError> {
    shared
        .settings
        .urls
        .iter()
        .map(|url| {
            without_credentials(url)
                .parse::<ServerAddr>()
                .map_err(|err| StartError::Internal(format!("{}: {err}", redact(url))))
        })
        .collect()
}

async fn run(
    shared: Arc<Shared>,
    cmds: mpsc::UnboundedReceiver<Cmd>,
    outbox: mpsc::UnboundedReceiver<Outgoing>,
    feed: Option<mpsc::UnboundedReceiver<FeedCmd>>,
    started: std::sync::mpsc::Sender<Result<(), StartError>>,
) {
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let addrs = match addresses(&shared) {
        Ok(addrs) => addrs,
        Err(err) => {
            let _ = started.send(Err(err));
            return;
        }
    };
    let failures = Arc::new(AtomicUsize::new(0));
    let client = match options(&shared, events_tx, failures.clone())
        .connect(addrs)
        .await
    {
        Ok(client) => client,
        Err(err) => {
            let _ = started.send(Err(StartError::Internal(err.to_string())));
            return;
        }
    };
    let reached = wait_connected(&client, &failures).await;
    if reached && node_id_taken(&shared, &client).await {
        let _ = started.send(Err(StartError::DuplicateNodeId(shared.node().to_owned())));
        return;
    }
    if !reached {
        // Nothing to wait for: cross-node routes answer 503 until NATS is
        // there, and readiness does not depend on it.
        shared.set_known();
    }
    if let Some(history) = &shared.history {
        history.attach(client.clone(), &shared.settings.prefix);
        if reached {
            // A stream with other limits stops the start; one that cannot
            // be reached now is made or checked when NATS comes back
            // (history fails closed until then).
            match history.ensure().await {
                Ok(epoch) => tracing::info!(%epoch, "history stream ready"),
                Err(SetupError::Mismatch(line)) => {
                    let _ = started.send(Err(StartError::HistoryStream(line)));
                    return;
                }
                Err(err) => tracing::warn!(error = %err, "history stream not ready"),
            }
        }
    }
    let mut inbox = Inbox::default();
    for subject in [
        shared.subjects.all(),
        shared.subjects.node(shared.node()),
        shared.subjects.replies(shared.node(), &shared.run),
    ] {
        match client.subscribe(subject.clone()).await {
            Ok(sub) => inbox.add(subject, sub),
            Err(err) => {
                let _ = started.send(Err(StartError::Internal(err.to_string())));
                return;
            }
        }
    }
    let _ = started.send(Ok(()));
    tokio::spawn(outbox::send(shared.clone(), client.clone(), outbox));
    if let Some(feed) = feed {
        tokio::spawn(Feed::run(shared.clone(), client.clone(), feed));
    }
    Engine::new(shared, client)
        .run(inbox, cmds, events_rx)
        .await;
}

/// Waits for the first connection while it is under way; gives up at the
/// first failed try (NATS is not there: start without it).
async fn wait_connected(client: &Client, failures: &AtomicUsize) -> bool {
    let deadline = Instant::now() + START_CHECK;
    while Instant::now() < deadline {
        if client.connection_state() == State::Connected {
            return true;
        }
        if failures.load(Ordering::SeqCst) > 0 {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// Asks whether a live node answers on this node's own subject.
async fn node_id_taken(shared: &Shared, client: &Client) -> bool {
    let mut meta = Meta::new(Kind::Probe);
    meta.o = shared.node().to_owned();
    meta.r = shared.run.clone();
    meta.s = 1;
    meta.g = 1;
    let mut headers = HeaderMap::new();
    headers.insert(HEADER, meta.encode().as_str());
    let request =
        client.request_with_headers(shared.subjects.node(shared.node()), headers, Bytes::new());
    matches!(
        tokio::time::timeout(shared.settings.timeout.max(START_CHECK), request).await,
        Ok(Ok(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tries_back_off_from_100_ms_to_2_s() {
        let ms = |failed| backoff(failed).as_millis();
        assert_eq!(ms(1), 100);
        assert_eq!(ms(2), 200);
        assert_eq!(ms(5), 1600);
        assert_eq!(ms(6), 2000);
        assert_eq!(ms(1000), 2000);
    }

    #[test]
    fn credentials_come_from_the_first_url_that_has_them() {
        let urls = |list: &[&str]| list.iter().map(|u| u.to_string()).collect::<Vec<_>>();
        assert_eq!(credentials(&urls(&["nats://a:4222"])), None);
        assert_eq!(
            credentials(&urls(&[
                "nats://a:4222",
                "nats://u:p:w@b:4222",
                "nats://t@c"
            ])),
            Some(Auth::UserPassword("u".into(), "p:w".into()))
        );
        assert_eq!(
            credentials(&urls(&["nats://s3cr@t@c:1"])),
            Some(Auth::Token("s3cr@t".into()))
        );
        assert_eq!(without_credentials("nats://u:p@b:4222"), "nats://b:4222");
        assert_eq!(without_credentials("nats://b:4222"), "nats://b:4222");
        assert_eq!(without_credentials("b:4222"), "nats://b:4222");
    }
}
