//! The background task that turns other instances' notices into [`Invalidation`]s.
//!
//! It owns one pub/sub connection (RESP2 pub/sub needs a connection of its own) subscribed to
//! `<prefix>:invalidate`. A notice from another origin becomes [`Invalidation::Key`] or
//! [`Invalidation::All`]; this instance's own notices are skipped, since the tiers above it
//! already saw those writes. Notices published while no subscription is live are lost, so a
//! lost connection sends [`Invalidation::All`] at once and again when the subscription is
//! back. A connection that stays open but stops answering (a half-open socket) is found by a
//! periodic `PING` on the subscription. The task runs until the tier aborts it on drop; every
//! wait inside it is bounded, and reconnect attempts back off up to a configured delay.

use std::future::poll_fn;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use futures_core::Stream;
use redis::aio::{PubSubSink, PubSubStream};
use tokio::sync::broadcast;

use super::encoding::{decode_notice, Notice, Origin};
use super::Stats;
use crate::Invalidation;

/// The first delay between reconnect attempts; it doubles up to `max_reconnect_delay`.
const FIRST_RECONNECT_DELAY: Duration = Duration::from_millis(50);

/// A live subscription: the sink sends `PING`s, the stream yields messages.
pub(super) type Subscription = (PubSubSink, PubSubStream);

/// Everything the task needs; moved into it.
pub(super) struct Subscriber {
    /// One client per configured node, tried in turn (in a cluster, any node relays every
    /// published message, so any node will do).
    pub(super) clients: Vec<redis::Client>,
    /// The channel, `<prefix>:invalidate`.
    pub(super) channel: String,
    /// This tier instance's identity; notices carrying it are skipped.
    pub(super) origin: Origin,
    /// Where invalidations go.
    pub(super) sender: broadcast::Sender<Invalidation>,
    /// Counters shared with the tier.
    pub(super) stats: Arc<Stats>,
    /// The bound on connecting and subscribing.
    pub(super) connect_timeout: Duration,
    /// How often a quiet subscription is checked with `PING`, and how long the answer may take.
    pub(super) liveness_interval: Duration,
    /// The longest delay between reconnect attempts.
    pub(super) max_reconnect_delay: Duration,
}

impl Subscriber {
    /// Connects to the `attempt`-th client (round robin) and subscribes, within the connect
    /// timeout.
    pub(super) async fn connect(&self, attempt: usize) -> Result<Subscription, String> {
        let client = &self.clients[attempt % self.clients.len()];
        let subscribe = async {
            let (mut sink, stream) = client.get_async_pubsub().await?.split();
            sink.subscribe(&self.channel).await?;
            Ok::<_, redis::RedisError>((sink, stream))
        };
        match tokio::time::timeout(self.connect_timeout, subscribe).await {
            Ok(Ok(subscription)) => Ok(subscription),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no subscription within {:?}", self.connect_timeout)),
        }
    }

    /// Serves `first`, then reconnects each time the subscription is lost, until aborted.
    pub(super) async fn run(self, first: Subscription) {
        let mut live = Some(first);
        let mut attempt = 0usize;
        loop {
            let (sink, stream) = match live.take() {
                Some(subscription) => subscription,
                None => match self.connect(attempt).await {
                    Ok(subscription) => {
                        self.stats.resubscriptions.fetch_add(1, Relaxed);
                        tracing::info!(channel = %self.channel, "redis invalidation subscription restored");
                        // Notices published while we were away are lost: flush again.
                        self.flush();
                        attempt = 0;
                        subscription
                    }
                    Err(reason) => {
                        let delay = backoff(attempt, self.max_reconnect_delay);
                        tracing::debug!(channel = %self.channel, %reason, ?delay, "redis invalidation subscription: reconnect failed");
                        attempt = attempt.saturating_add(1);
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                },
            };
            let reason = self.serve(sink, stream).await;
            self.stats.subscription_losses.fetch_add(1, Relaxed);
            tracing::warn!(channel = %self.channel, %reason, "redis invalidation subscription lost; flushing the tiers above");
            self.flush();
        }
    }

    /// Forwards messages until the subscription fails; returns why it failed.
    async fn serve(&self, mut sink: PubSubSink, mut stream: PubSubStream) -> String {
        let mut tick = tokio::time::interval(self.liveness_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick completes at once; the subscription was just confirmed.
        tick.tick().await;
        loop {
            tokio::select! {
                message = poll_fn(|cx| std::pin::Pin::new(&mut stream).poll_next(cx)) => match message {
                    Some(message) => self.forward(message.get_payload_bytes()),
                    None => return "connection closed".to_string(),
                },
                _ = tick.tick() => {
                    let ping = sink.ping::<redis::Value>();
                    match tokio::time::timeout(self.liveness_interval, ping).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return format!("ping failed: {e}"),
                        Err(_) => return format!("no ping reply within {:?}", self.liveness_interval),
                    }
                }
            }
        }
    }

    /// Turns one notice into an invalidation, unless it is this instance's own.
    fn forward(&self, payload: &[u8]) {
        let invalidation = match decode_notice(payload) {
            Some((origin, _)) if origin == self.origin => return,
            Some((_, Notice::Key(key))) => Invalidation::Key(key),
            Some((_, Notice::All)) => Invalidation::All,
            None => {
                // A notice we cannot read may have named any key: assume all are stale.
                tracing::warn!(channel = %self.channel, len = payload.len(), "unreadable invalidation notice; flushing");
                Invalidation::All
            }
        };
        self.stats.invalidations_received.fetch_add(1, Relaxed);
        // An error only means nobody is listening right now, which is fine.
        let _ = self.sender.send(invalidation);
    }

    /// Tells every listener to drop everything.
    fn flush(&self) {
        self.stats.flushes_sent.fetch_add(1, Relaxed);
        let _ = self.sender.send(Invalidation::All);
    }
}

/// The delay before reconnect attempt `attempt + 1`: doubling from
/// [`FIRST_RECONNECT_DELAY`], capped at `max`.
fn backoff(attempt: usize, max: Duration) -> Duration {
    let shift = u32::try_from(attempt.min(16)).unwrap_or(16);
    FIRST_RECONNECT_DELAY.saturating_mul(1u32 << shift).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let max = Duration::from_secs(2);
        let delays: Vec<_> = (0..8).map(|a| backoff(a, max).as_millis()).collect();
        assert_eq!(delays, [50, 100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(backoff(usize::MAX, max), max);
    }
}
