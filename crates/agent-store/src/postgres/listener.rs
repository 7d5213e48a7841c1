//! The `LISTEN` connection of a [`PostgresStore`](super::PostgresStore): one per store, on a
//! pool of its own (so it never takes a query connection), forwarding the payload (a session
//! id) of every notification on the cancel channel to a broadcast channel.
//!
//! Notifications are hints: a lost one costs only latency, because the holder of a session
//! polls `cancel_requested` anyway. When the connection drops, sqlx reconnects and listens
//! again; what was sent meanwhile is lost and polling covers it.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

/// How long the loop waits before it tries again after an error it cannot recover from at once
/// (the server is down).
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The running forwarder; [`stop`](Self::stop) ends it (also when the store is dropped).
#[derive(Debug)]
pub(super) struct ListenerTask {
    handle: JoinHandle<()>,
}

impl ListenerTask {
    pub(super) fn stop(&self) {
        self.handle.abort();
    }
}

/// Connects, listens on `channel` (before returning, so that no request made after the store
/// opened is missed) and spawns the forwarding loop.
pub(super) async fn start(
    options: PgConnectOptions,
    channel: &'static str,
) -> Result<(broadcast::Sender<String>, ListenerTask), sqlx::Error> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options)
        .await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen(channel).await?;
    let (sender, _) = broadcast::channel(super::WAKEUP_BUFFER);
    let forward = sender.clone();
    let handle = tokio::spawn(async move {
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    // No receiver (no execution running here) is not an error.
                    let _ = forward.send(notification.payload().to_owned());
                }
                Ok(None) => {
                    tracing::debug!(target: "store", "LISTEN connection lost; reconnecting");
                }
                Err(error) => {
                    tracing::warn!(target: "store", %error,
                        "LISTEN connection failed; cancels are seen by polling until it is back");
                    tokio::time::sleep(RETRY_AFTER).await;
                }
            }
        }
    });
    Ok((sender, ListenerTask { handle }))
}
