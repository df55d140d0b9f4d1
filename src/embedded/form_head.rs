//! A POST form's body, with its first line handed to `s3s` whole.
//!
//! `s3s` 0.14 parses a POST form (`PostObject`, Uppy's single-request upload) as its chunks
//! arrive, and takes whatever its first chunk holds for the form's opening boundary line: when
//! that chunk ends inside the line, it answers 400 `MalformedPOSTRequest`. Browsers send the
//! body in as many writes as they like, and on a busy machine the server can read the first
//! few bytes on their own, so a good upload failed now and then (Uppy reports "network error").
//! [`FormHead`] gathers the body's first [`HEAD`] bytes (or all of it, if shorter) into one
//! frame before `s3s` sees it; the rest passes through untouched.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use hyper::body::{Body as HttpBody, Frame, SizeHint};

/// How much of the body the first frame carries. RFC 2046 caps a boundary at 70 characters,
/// so the opening line (with an optional blank line before it) fits in under 80 bytes.
pub const HEAD: usize = 1024;

/// `inner`, whose first frame holds at least [`HEAD`] bytes unless the body is shorter.
pub struct FormHead<B> {
    inner: B,
    /// The bytes gathered so far; `None` once the head was handed on.
    head: Option<BytesMut>,
    /// A frame that is not data (trailers) met while gathering, handed on after the head.
    held: Option<Frame<Bytes>>,
    ended: bool,
}

impl<B> FormHead<B> {
    pub fn new(inner: B) -> Self {
        Self { inner, head: Some(BytesMut::new()), held: None, ended: false }
    }
}

impl<B> HttpBody for FormHead<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        if let Some(head) = &mut this.head {
            while head.len() < HEAD && this.held.is_none() && !this.ended {
                match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) => head.extend_from_slice(&data),
                        Err(other) => this.held = Some(other),
                    },
                    Some(Err(err)) => {
                        this.head = None;
                        return Poll::Ready(Some(Err(err)));
                    }
                    None => this.ended = true,
                }
            }
            let head = this.head.take().unwrap_or_default();
            if !head.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(head.freeze()))));
            }
        }
        if let Some(frame) = this.held.take() {
            return Poll::Ready(Some(Ok(frame)));
        }
        if this.ended {
            return Poll::Ready(None);
        }
        Pin::new(&mut this.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.head.as_ref().is_none_or(BytesMut::is_empty)
            && self.held.is_none()
            && (self.ended || self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.inner.size_hint();
        if let Some(gathered) = self.head.as_ref().map(|head| head.len() as u64)
            && gathered > 0
        {
            hint.set_lower(hint.lower() + gathered);
            if let Some(upper) = hint.upper() {
                hint.set_upper(upper + gathered);
            }
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    /// A body sent in the given pieces, as a client's separate writes would arrive.
    fn pieces(
        parts: &[&'static [u8]],
    ) -> FormHead<impl HttpBody<Data = Bytes, Error = std::convert::Infallible> + Unpin> {
        let frames: Vec<Result<_, std::convert::Infallible>> =
            parts.iter().map(|part| Ok(Frame::data(Bytes::from_static(part)))).collect();
        FormHead::new(StreamBody::new(futures::stream::iter(frames)))
    }

    async fn frames_of<B: HttpBody<Data = Bytes> + Unpin>(mut body: B) -> Vec<Bytes>
    where
        B::Error: std::fmt::Debug,
    {
        let mut frames = Vec::new();
        while let Some(frame) = body.frame().await {
            frames.push(frame.unwrap().into_data().unwrap());
        }
        frames
    }

    #[tokio::test]
    async fn a_first_line_sent_in_pieces_reaches_the_parser_whole() {
        let frames = frames_of(pieces(&[b"--bound", b"ary\r\nContent-Disposition", b": form-data"])).await;
        assert_eq!(frames, vec![Bytes::from_static(b"--boundary\r\nContent-Disposition: form-data")]);
    }

    #[tokio::test]
    async fn bytes_past_the_head_pass_through_as_they_came() {
        let big: &'static [u8] = Box::leak(vec![b'x'; HEAD + 10].into_boxed_slice());
        let frames = frames_of(pieces(&[b"--b\r\n", big, b"tail"])).await;
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].len(), HEAD + 15);
        assert_eq!(frames[1], Bytes::from_static(b"tail"));
    }

    #[tokio::test]
    async fn an_empty_body_stays_empty() {
        let body = pieces(&[]);
        assert!(frames_of(body).await.is_empty());
    }
}
