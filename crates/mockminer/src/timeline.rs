//! Server-side instants of every frame sent, for measuring the harness against the truth.
//!
//! Only the overhead benchmark turns this on: it runs the mock in the same process as the
//! harness, so both sides read the same monotonic clock and the difference between when a
//! frame was sent and when the harness stamped it is the instrument's own error.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    Role,
    Content,
    Comment,
    Usage,
    Done,
    Other,
}

/// What the server did for one response: when the request arrived, and each frame.
#[derive(Debug, Clone)]
pub struct Served {
    pub received: Instant,
    pub frames: Vec<(Instant, FrameKind)>,
}

#[derive(Debug, Default)]
pub struct Timeline {
    served: Mutex<HashMap<String, Served>>,
}

impl Timeline {
    pub(crate) fn start(&self, id: &str, received: Instant) {
        if let Ok(mut served) = self.served.lock() {
            served.insert(
                id.to_string(),
                Served {
                    received,
                    frames: Vec::new(),
                },
            );
        }
    }

    /// Called as the HTTP server takes a frame from the body to write it to the socket.
    pub(crate) fn stamp(&self, id: &str, kind: FrameKind) {
        let now = Instant::now();
        if let Ok(mut served) = self.served.lock() {
            if let Some(s) = served.get_mut(id) {
                s.frames.push((now, kind));
            }
        }
    }

    /// The record of the response with this `id`.
    pub fn get(&self, id: &str) -> Option<Served> {
        self.served.lock().ok()?.get(id).cloned()
    }

    pub fn clear(&self) {
        if let Ok(mut served) = self.served.lock() {
            served.clear();
        }
    }
}
