//! TCP listeners: bind with the configured backlog, accept, hand each
//! socket to the core's connection state machine.

use std::sync::Arc;
use std::time::Duration;

use portcullis_core::broker::Broker;
use portcullis_core::connection::{serve, ListenerContext};
use portcullis_core::gate::Gate;
use tokio::net::TcpSocket;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::ListenerConfig;

/// Binds the listener and spawns its accept loop.
pub async fn start(cfg: &ListenerConfig, broker: Arc<Broker>, gate: Arc<dyn Gate>) -> std::io::Result<JoinHandle<()>> {
    let socket = if cfg.bind.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(cfg.bind)?;
    let listener = socket.listen(cfg.backlog)?;
    let local = listener.local_addr()?;
    info!(listener = %cfg.name, addr = %local, max_connections = cfg.max_connections, "listening");
    let ctx = ListenerContext::new(&cfg.name, cfg.max_connections);
    Ok(tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let broker = Arc::clone(&broker);
                    let gate = Arc::clone(&gate);
                    let ctx = Arc::clone(&ctx);
                    tokio::spawn(serve(broker, gate, ctx, stream, peer));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(listener = %ctx.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }))
}
