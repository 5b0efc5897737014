//! A relay server run in-process on a free loopback port, and clients
//! pinned to its key: the harness the server's integration tests share.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cipherline_client::{Client, ClientError, Options};
use cipherline_proto::crypto::kem::{ServerKey, ServerPublicKey};
use cipherline_server::{Limits, Settings};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// A running server.
pub struct Server {
    pub addr: String,
    pub fingerprint: [u8; 32],
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Server {
    pub async fn start(limits: Limits) -> Server {
        let key = Arc::new(ServerKey::x25519_from_bytes(&[0x5a; 32]).unwrap());
        let fingerprint = key.public_key().fingerprint();
        let settings = Settings { protocol: Arc::new(cipherline_proto::ServerConfig::new(key)), limits };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            cipherline_server::run(listener, settings, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Server { addr: addr.to_string(), fingerprint, stop: Some(stop), task }
    }

    pub async fn client(&self, name: &str) -> Result<Client, ClientError> {
        let fp = self.fingerprint;
        let pin = move |_: &str, key: &ServerPublicKey| {
            if key.fingerprint() == fp { Ok(()) } else { Err("fingerprint mismatch".to_owned()) }
        };
        Client::connect(&self.addr, name, &Options::default(), &pin).await
    }

    /// A client that must connect.
    pub async fn connect(&self, name: &str) -> Client {
        self.client(name).await.unwrap()
    }

    pub async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        timeout(Duration::from_secs(10), self.task).await.expect("shutdown within its grace period").unwrap();
    }
}
