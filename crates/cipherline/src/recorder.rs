//! What `listen`, `chat` and `send` do with each message besides showing
//! it: record it in the local history (`client.db`), and decide whether it
//! is shown at all — a message the server delivers again (it was not yet
//! acknowledged when an earlier run or connection ended) is shown once.

use cipherline_client::LocalStore;
use cipherline_client::local::Msg;
use cipherline_client::peers::MessageStatus;
use cipherline_client::seen::Seen;
use cipherline_proto::app::Delivery;

/// Records messages for one client process, across its reconnections.
pub struct Recorder {
    store: Option<LocalStore>,
    server: String,
    /// The history's newest entry when this process first connected.
    since: u64,
    /// Ids shown by this process.
    shown: Seen,
    /// Whether a failure to write the history was reported already.
    warned: bool,
}

impl Recorder {
    /// A recorder for messages of `server` into `store` (none: memory only).
    pub fn new(store: Option<LocalStore>, server: String) -> Self {
        let since = store.as_ref().and_then(|s| s.watermark().ok()).unwrap_or(u64::MAX);
        Recorder { store, server, since, shown: Seen::new(), warned: false }
    }

    /// Whether to show an incoming message: not shown before by this
    /// process, nor by an earlier run. Ask before showing it, and call
    /// [`Recorder::shown`] once it is written out.
    pub fn is_new(&mut self, me: &str, d: &Delivery, status: &MessageStatus) -> bool {
        if self.shown.contains(d.id) {
            return false;
        }
        let Some(store) = &self.store else { return true };
        match store.recorded_before(&Msg::received(&self.server, me, d, status), self.since) {
            Ok(before) => !before,
            Err(e) => {
                self.warn(&e);
                true
            }
        }
    }

    /// An incoming message was shown (written out): records it, in this
    /// process and in the history. Only after this may it be acknowledged.
    pub fn shown(&mut self, me: &str, d: &Delivery, status: &MessageStatus) {
        self.shown_as(me, d, status, false);
    }

    /// [`Recorder::shown`] for a message that came end to end (`e2e`) or not.
    pub fn shown_as(&mut self, me: &str, d: &Delivery, status: &MessageStatus, e2e: bool) {
        self.shown.insert(d.id);
        if let Some(store) = &self.store
            && let Err(e) = store.record(&Msg::received(&self.server, me, d, status).with_e2e(e2e))
        {
            self.warn(&e);
        }
    }

    /// Notes the queue position acknowledged to the server.
    pub fn acknowledged(&mut self, seq: u64) {
        if seq == 0 {
            return;
        }
        if let Some(store) = &self.store
            && let Err(e) = store.set_cursor(&self.server, seq)
        {
            self.warn(&e);
        }
    }

    fn warn(&mut self, e: &cipherline_client::ClientError) {
        if !self.warned {
            self.warned = true;
            eprintln!("warning: the local history could not be written ({e}); messages are still shown");
        }
    }
}
