//! The instant a request actually leaves: a request body that stamps the clock when the
//! HTTP connection takes it to write, right after the headers.
//!
//! Stamping before `send()` would count the client's own dispatch (task scheduling, pool
//! checkout, hand-off to the connection task) as the server's TTFT; at concurrency 256 on a
//! busy machine that is milliseconds. The body has an exact size, so the request still goes
//! out with `Content-Length`, byte for byte as a plain body would.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;

pub(crate) struct StampedBody {
    data: Option<Bytes>,
    len: u64,
    stamp: Arc<OnceLock<Instant>>,
}

impl StampedBody {
    pub(crate) fn new(data: Vec<u8>) -> (Self, Arc<OnceLock<Instant>>) {
        let stamp = Arc::new(OnceLock::new());
        let body = Self {
            len: data.len() as u64,
            data: Some(Bytes::from(data)),
            stamp: stamp.clone(),
        };
        (body, stamp)
    }
}

impl Body for StampedBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let _ = self.stamp.set(Instant::now());
        Poll::Ready(self.data.take().map(|d| Ok(Frame::data(d))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(if self.data.is_some() { self.len } else { 0 })
    }
}
