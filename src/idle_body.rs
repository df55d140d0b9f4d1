//! A request body that gives up when the client stops sending.
//!
//! A client that sends its headers and a few bytes, then nothing, would otherwise hold a
//! connection, a task and a temporary file for as long as the TCP connection lives. Wrapped
//! in [`IdleBody`], the body fails once no frame arrived for the idle period while the store
//! was waiting for one; the write in progress then fails like any cut-off upload (nothing is
//! kept) and the connection is closed after the error answer.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The error an idle body ends with.
#[derive(Debug, thiserror::Error)]
#[error("no data from the client for {0:?}: request body abandoned")]
pub struct BodyIdle(pub Duration);

/// `inner`, failing with [`BodyIdle`] after `timeout` without a frame while being read.
pub struct IdleBody<B> {
    inner: B,
    timeout: Duration,
    /// Armed when a read finds nothing ready; disarmed by each frame.
    sleep: Pin<Box<Sleep>>,
    armed: bool,
    failed: bool,
}

impl<B> IdleBody<B> {
    pub fn new(inner: B, timeout: Duration) -> Self {
        Self { inner, timeout, sleep: Box::pin(tokio::time::sleep(timeout)), armed: false, failed: false }
    }
}

impl<B> HttpBody for IdleBody<B>
where
    B: HttpBody + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if this.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.armed = false;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                if !this.armed {
                    let deadline = Instant::now() + this.timeout;
                    this.sleep.as_mut().reset(deadline);
                    this.armed = true;
                }
                match this.sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.failed = true;
                        Poll::Ready(Some(Err(BodyIdle(this.timeout).into())))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        !self.failed && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, StreamBody};

    type Chunks = futures::channel::mpsc::UnboundedReceiver<Result<Frame<Bytes>, std::io::Error>>;

    fn channel() -> (futures::channel::mpsc::UnboundedSender<Result<Frame<Bytes>, std::io::Error>>, StreamBody<Chunks>)
    {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        (tx, StreamBody::new(rx))
    }

    #[tokio::test]
    async fn a_steady_body_is_read_to_the_end() {
        let (tx, inner) = channel();
        let mut body = IdleBody::new(inner, Duration::from_millis(400));
        tokio::spawn(async move {
            for _ in 0..5 {
                // Slow (the whole body takes longer than the idle period), but never idle.
                tokio::time::sleep(Duration::from_millis(100)).await;
                tx.unbounded_send(Ok(Frame::data(Bytes::from_static(b"abc")))).unwrap();
            }
        });
        let mut total = 0;
        while let Some(frame) = body.frame().await {
            total += frame.unwrap().into_data().unwrap().len();
        }
        assert_eq!(total, 15);
    }

    #[tokio::test]
    async fn a_stalled_body_fails_after_the_idle_period() {
        let (tx, inner) = channel();
        let mut body = IdleBody::new(inner, Duration::from_millis(300));
        tx.unbounded_send(Ok(Frame::data(Bytes::from_static(b"abc")))).unwrap();
        let started = Instant::now();
        assert!(body.frame().await.unwrap().is_ok());
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(err.is::<BodyIdle>(), "{err}");
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(300) && waited < Duration::from_secs(5), "{waited:?}");
        assert!(body.frame().await.is_none(), "nothing after the failure");
        drop(tx);
    }
}
