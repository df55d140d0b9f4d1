//! A POST form's body, cut the way `s3s` can parse it.
//!
//! `s3s` 0.14 parses a POST form (`PostObject`, Uppy's single-request upload) as its chunks
//! arrive, and two things about those chunks make it refuse good uploads with a 400:
//! - it takes its first chunk for the whole opening boundary line, so a first chunk that ends
//!   inside that line is `MalformedPOSTRequest`;
//! - when a chunk of the file ends with what could be the start of the closing boundary (any
//!   chunk ending in `\r`: one in 256 of random bytes), it holds those bytes and refuses with
//!   "failed to read file stream" if they and the next chunk come to more than 64 KiB.
//!
//! Browsers send the body in writes of their own choosing, and hyper hands it on in frames up to
//! its read buffer (64 KiB), so both happened now and then (Uppy reports "network error").
//! [`FormBody`] gathers the body's first [`HEAD`] bytes (or all of it, if shorter) into one frame
//! and then cuts every frame to at most [`MAX_FRAME`]; the bytes themselves pass untouched.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use hyper::body::{Body as HttpBody, Frame, SizeHint};

/// How much of the body the first frame carries. RFC 2046 caps a boundary at 70 characters,
/// so the opening line (with an optional blank line before it) fits in under 80 bytes.
pub const HEAD: usize = 1024;

/// The largest frame handed on: with a held boundary prefix (under 80 bytes) it stays far below
/// the 64 KiB `s3s` allows.
pub const MAX_FRAME: usize = 32 * 1024;

/// `inner`, whose first frame holds at least [`HEAD`] bytes unless the body is shorter, and
/// whose frames hold at most [`MAX_FRAME`] bytes.
pub struct FormBody<B> {
    inner: B,
    /// The first bytes gathered so far; `None` once the head was handed on.
    head: Option<BytesMut>,
    /// Bytes received and not yet handed on (the rest of a frame larger than [`MAX_FRAME`]).
    rest: Bytes,
    /// A frame that is not data (trailers) met while gathering, handed on after the head.
    held: Option<Frame<Bytes>>,
    ended: bool,
}

impl<B> FormBody<B> {
    pub fn new(inner: B) -> Self {
        Self { inner, head: Some(BytesMut::new()), rest: Bytes::new(), held: None, ended: false }
    }

    /// The next frame out of [`Self::rest`].
    fn cut(&mut self) -> Frame<Bytes> {
        let len = self.rest.len().min(MAX_FRAME);
        Frame::data(self.rest.split_to(len))
    }
}

impl<B> HttpBody for FormBody<B>
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
            this.rest = this.head.take().unwrap_or_default().freeze();
        }
        if !this.rest.is_empty() {
            return Poll::Ready(Some(Ok(this.cut())));
        }
        if let Some(frame) = this.held.take() {
            return Poll::Ready(Some(Ok(frame)));
        }
        if this.ended {
            return Poll::Ready(None);
        }
        match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    this.rest = data;
                    if this.rest.is_empty() {
                        // An empty data frame: pass it on as it came.
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::new()))));
                    }
                    Poll::Ready(Some(Ok(this.cut())))
                }
                Err(other) => Poll::Ready(Some(Ok(other))),
            },
            other => {
                if other.is_none() {
                    this.ended = true;
                }
                Poll::Ready(other)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.head.as_ref().is_none_or(BytesMut::is_empty)
            && self.rest.is_empty()
            && self.held.is_none()
            && (self.ended || self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.inner.size_hint();
        let waiting = self.head.as_ref().map_or(0, BytesMut::len) as u64 + self.rest.len() as u64;
        if waiting > 0 {
            hint.set_lower(hint.lower() + waiting);
            if let Some(upper) = hint.upper() {
                hint.set_upper(upper + waiting);
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
    fn pieces(parts: Vec<Bytes>) -> FormBody<impl HttpBody<Data = Bytes, Error = std::convert::Infallible> + Unpin> {
        let frames: Vec<Result<_, std::convert::Infallible>> = parts.into_iter().map(|p| Ok(Frame::data(p))).collect();
        FormBody::new(StreamBody::new(futures::stream::iter(frames)))
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
        let parts = [&b"--bound"[..], b"ary\r\nContent-Disposition", b": form-data"].map(Bytes::from_static).to_vec();
        let frames = frames_of(pieces(parts)).await;
        assert_eq!(frames, vec![Bytes::from_static(b"--boundary\r\nContent-Disposition: form-data")]);
    }

    #[tokio::test]
    async fn no_frame_is_larger_than_the_limit_and_every_byte_passes_in_order() {
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let parts = vec![
            Bytes::copy_from_slice(&body[..10]),
            Bytes::copy_from_slice(&body[10..100_000]),
            Bytes::copy_from_slice(&body[100_000..]),
        ];
        let frames = frames_of(pieces(parts)).await;
        assert!(frames[0].len() >= HEAD, "the first frame holds the head");
        assert!(frames.iter().all(|f| f.len() <= MAX_FRAME), "{:?}", frames.iter().map(Bytes::len).collect::<Vec<_>>());
        assert_eq!(frames.concat(), body);
    }

    #[tokio::test]
    async fn an_empty_body_stays_empty() {
        assert!(frames_of(pieces(Vec::new())).await.is_empty());
    }
}
