//! Byte transports a connection runs over: any tokio stream (TCP, TLS), or a WebSocket whose
//! binary frames carry the MQTT byte stream.

use bytes::BytesMut;
use futures::{SinkExt as _, StreamExt as _};
use std::future::Future;
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// A duplex byte transport. `read` must be cancel-safe: it runs inside `select!`.
pub trait Transport: Send + 'static {
    /// Appends received bytes to `buf`; `Ok(0)` means the peer closed.
    fn read(&mut self, buf: &mut BytesMut) -> impl Future<Output = io::Result<usize>> + Send;
    /// Writes and flushes all of `data`.
    fn write_all(&mut self, data: &[u8]) -> impl Future<Output = io::Result<()>> + Send;
    /// Closes the write side.
    fn shutdown(&mut self) -> impl Future<Output = io::Result<()>> + Send;
}

/// Bytes made room for before a read when the buffer is (nearly) full.
const READ_CHUNK: usize = 2 * 1024;

/// A transport over a tokio stream (TCP or TLS).
#[derive(Debug)]
pub struct StreamTransport<S>(pub S);

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Transport for StreamTransport<S> {
    async fn read(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        // Small steps: an idle connection holds this buffer for hours, and BytesMut grows by
        // doubling when a large packet needs more.
        if buf.capacity() - buf.len() < 512 {
            buf.reserve(READ_CHUNK);
        }
        self.0.read_buf(buf).await
    }

    async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.0.write_all(data).await?;
        self.0.flush().await
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.0.shutdown().await
    }
}

/// A transport over a WebSocket (subprotocol `mqtt`): each binary frame carries MQTT bytes.
#[derive(Debug)]
pub struct WebSocketTransport<S>(pub WebSocketStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Transport for WebSocketTransport<S> {
    async fn read(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        loop {
            match self.0.next().await {
                None | Some(Ok(Message::Close(_))) => return Ok(0),
                Some(Ok(Message::Binary(data))) => {
                    if data.is_empty() {
                        continue;
                    }
                    buf.extend_from_slice(&data);
                    return Ok(data.len());
                }
                // Pings are answered by tungstenite on the next write or flush.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Text(_))) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "MQTT over WebSocket needs binary frames",
                    ));
                }
                Some(Err(e)) => return Err(io::Error::other(e)),
            }
        }
    }

    async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.0
            .send(Message::Binary(bytes::Bytes::copy_from_slice(data)))
            .await
            .map_err(io::Error::other)
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.0.close(None).await.map_err(io::Error::other)
    }
}
