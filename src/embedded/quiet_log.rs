//! Keeps clients' mistakes out of the error log.
//!
//! `s3s` logs every request it refuses at ERROR (`failed to prepare` for a missing or wrong
//! signature, `op returns error` for any S3 error an operation returns, `malformed xml body`
//! with the body's bytes), so anyone on the internet could fill the log with "errors" by
//! sending unsigned requests to the store. While `s3s` handles a request, it logs through
//! [`QuietS3s`]: a subscriber that forwards everything to the one that was in place, except
//! those ERROR and WARN events of `s3s::ops` and `s3s::http`. What they said is kept as a
//! note that [`super::call`] logs at debug when the answer is a 4xx.
//!
//! Real failures still reach the error log: the store's own I/O failures are logged at ERROR
//! by `backend::internal`, `s3s::service` logs every 5xx answer at ERROR (it is not filtered),
//! and `call` logs 5xx answers too. The one exception is a full disk: `backend::disk_full`
//! logs it once at WARN and marks the request [`REPORTED`], so neither repeats it at ERROR.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Dispatch, Event, Level, Metadata, Subscriber};

tokio::task_local! {
    /// What the last muted event of the request being handled said.
    pub(super) static NOTE: RefCell<Option<String>>;
    /// Whether the store itself already logged why the request being handled fails (a full
    /// disk, at WARN): `s3s::service`'s ERROR report of the 5xx is then muted, and `call`
    /// logs the answer at debug only.
    pub(super) static REPORTED: Cell<bool>;
}

/// Notes that the store logged the cause of the current request's failure itself.
pub(super) fn reported() {
    let _ = REPORTED.try_with(|r| r.set(true));
}

fn already_reported(meta: &Metadata<'_>) -> bool {
    let target = meta.target();
    (target == "s3s::service" || target.starts_with("s3s::service::"))
        && *meta.level() == Level::ERROR
        && REPORTED.try_with(Cell::get).unwrap_or(false)
}

/// Forwards to `inner`, muting `s3s`'s reports of refused requests.
pub(super) struct QuietS3s {
    inner: Dispatch,
    /// The most verbose level enabled when this was made (`Dispatch` does not tell its own).
    max_level: LevelFilter,
}

impl QuietS3s {
    /// A dispatcher wrapping the current default one (create it once: making a dispatcher
    /// registers it with every callsite).
    pub fn around_current() -> Dispatch {
        let inner = tracing::dispatcher::get_default(Dispatch::clone);
        Dispatch::new(Self { inner, max_level: LevelFilter::current() })
    }
}

/// An event `s3s` emits about a request it refused (a client's doing, unless the answer is a
/// 5xx, which `s3s::service` and `call` log).
pub(super) fn is_client_noise(meta: &Metadata<'_>) -> bool {
    let target = meta.target();
    let from_request_handling = target == "s3s::ops"
        || target.starts_with("s3s::ops::")
        || target == "s3s::http"
        || target.starts_with("s3s::http::");
    from_request_handling && *meta.level() <= Level::WARN
}

/// Gathers an event's fields as `name=value` text.
struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        let _ = write!(self.0, "{}={value:?}", field.name());
    }
}

// `current_span` keeps its default (unknown): its type is not exported by `tracing`, and
// nothing the store runs asks for `Span::current()`.
impl Subscriber for QuietS3s {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        self.inner.register_callsite(meta)
    }

    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        // Muted events are still seen here, to keep their note.
        is_client_noise(meta) || self.inner.enabled(meta)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.max_level)
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        self.inner.new_span(span)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        self.inner.record(span, values);
    }

    fn record_follows_from(&self, span: &Id, follows: &Id) {
        self.inner.record_follows_from(span, follows);
    }

    fn event(&self, event: &Event<'_>) {
        // (`Dispatch::event` asks the inner subscriber's `event_enabled` first.)
        if is_client_noise(event.metadata()) {
            let mut text = Text(String::new());
            event.record(&mut text);
            let _ = NOTE.try_with(|note| *note.borrow_mut() = Some(text.0));
        } else if already_reported(event.metadata()) {
            // The store logged the cause at WARN (`backend::disk_full`): one line is enough.
        } else {
            self.inner.event(event);
        }
    }

    fn enter(&self, span: &Id) {
        self.inner.enter(span);
    }

    fn exit(&self, span: &Id) {
        self.inner.exit(span);
    }

    fn clone_span(&self, id: &Id) -> Id {
        self.inner.clone_span(id)
    }

    fn try_close(&self, id: Id) -> bool {
        self.inner.try_close(id)
    }
}
