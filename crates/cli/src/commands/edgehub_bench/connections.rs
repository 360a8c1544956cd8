//! Memory per connection: how much a server's RSS grows with many idle clients connected over
//! TLS, each subscribed as a module subscribes to its inputs.

use std::sync::Arc;

use anyhow::{Context, Result};
use rumqttc::QoS;
use tokio::task::JoinSet;

use super::{Login, Server, client, wait_ready};

/// Clients connected at once while the others wait (keeps the TLS handshakes from timing out).
const CONNECTING_AT_ONCE: usize = 50;

/// RSS of `server` before and with `logins.len()` clients connected (KiB); each client
/// subscribes to the filter paired with its login.
pub(super) async fn rss_with_connections(
    server: &Server,
    host: &str,
    port: u16,
    tls: &Arc<rustls::ClientConfig>,
    logins: Vec<(Login, String)>,
) -> Result<(u64, u64)> {
    let before = server.rss_kib().context("reading the server's RSS")?;
    let mut held = JoinSet::new();
    let mut clients = Vec::with_capacity(logins.len());
    for chunk in logins.chunks(CONNECTING_AT_ONCE) {
        let mut connecting = JoinSet::new();
        for (login, filter) in chunk.iter().cloned() {
            let (c, mut eventloop) = client(&login, host, port, tls);
            let host = host.to_owned();
            connecting.spawn(async move {
                c.subscribe(filter, QoS::AtLeastOnce).await?;
                wait_ready(&mut eventloop, true)
                    .await
                    .with_context(|| format!("{} connecting to {host}:{port}", login.client_id))?;
                anyhow::Ok((c, eventloop))
            });
        }
        while let Some(joined) = connecting.join_next().await {
            let (c, mut eventloop) = joined??;
            clients.push(c);
            // Keep answering keepalives until the measurement is over.
            held.spawn(async move { while eventloop.poll().await.is_ok() {} });
        }
    }
    let with = server.rss_kib().context("reading the server's RSS")?;
    for c in &clients {
        let _ = c.disconnect().await;
    }
    held.abort_all();
    Ok((before, with))
}

/// One line of figures: RSS before, with the connections, and the growth per connection.
pub(super) fn describe(name: &str, n: usize, (before, with): (u64, u64)) -> String {
    let per = with.saturating_sub(before) as f64 / n.max(1) as f64;
    format!(
        "{name} RSS with {n} idle TLS connections (each subscribed): {:.1} MB (from {:.1} MB, {per:.1} KiB per connection)",
        with as f64 / 1024.0,
        before as f64 / 1024.0
    )
}
