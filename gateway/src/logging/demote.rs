//! Lines that a dependency logs at a level that would mislead an operator
//! here, shown at debug instead (their text unchanged):
//!
//! - actix-http's HTTP/1 dispatcher logs at error what a client did wrong
//!   to the admin listener (`stream error: request parse error`, a reset,
//!   a timeout). Input from outside is never an error in our logs; the
//!   client already got its 400 or 408.
//! - actix-server logs at info how it starts and stops the admin server's
//!   own worker (`starting 1 workers`), which reads as if it were the
//!   gateway's `--workers`; `gateway ready` already names the admin address.
//!
//! Done as a layer around the formatter rather than a filter directive, so
//! that it holds whatever `RUST_LOG` says and the lines are still there,
//! as debug, for whoever asks for debug. A demoted line keeps its message
//! and fields, as text in its message.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing_core::callsite::{Callsite, Identifier};
use tracing_core::field::FieldSet;
use tracing_core::metadata::Kind;
use tracing_core::span;
use tracing_core::subscriber::Interest;
use tracing_core::{Dispatch, Event, Level, LevelFilter, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Wraps the layer that writes lines (`inner`) and hands it the events of
/// the table above at debug.
pub struct Demote<L> {
    inner: L,
}

impl<L> Demote<L> {
    pub fn new(inner: L) -> Self {
        Demote { inner }
    }
}

/// The debug line an event becomes, if it is one to demote.
fn demoted(meta: &Metadata<'_>) -> Option<&'static Metadata<'static>> {
    let target = meta.target();
    let level = *meta.level();
    if target == "actix_http::h1::dispatcher" && (level == Level::ERROR || level == Level::WARN) {
        Some(&HTTP_DISPATCHER)
    } else if (target == "actix_server" || target.starts_with("actix_server::"))
        && level == Level::INFO
    {
        Some(&ADMIN_SERVER)
    } else {
        None
    }
}

/// A call site of our own for each demoted line: an event's level is in
/// its static metadata, so a line at another level needs other metadata.
struct Demoted(&'static Metadata<'static>);

impl Callsite for Demoted {
    fn set_interest(&self, _: Interest) {}

    fn metadata(&self) -> &Metadata<'_> {
        self.0
    }
}

static HTTP_DISPATCHER_SITE: Demoted = Demoted(&HTTP_DISPATCHER);
static HTTP_DISPATCHER: Metadata<'static> = Metadata::new(
    "demoted",
    "actix_http::h1::dispatcher",
    Level::DEBUG,
    None,
    None,
    None,
    FieldSet::new(&["message"], Identifier(&HTTP_DISPATCHER_SITE)),
    Kind::EVENT,
);
static ADMIN_SERVER_SITE: Demoted = Demoted(&ADMIN_SERVER);
static ADMIN_SERVER: Metadata<'static> = Metadata::new(
    "demoted",
    "actix_server",
    Level::DEBUG,
    None,
    None,
    None,
    FieldSet::new(&["message"], Identifier(&ADMIN_SERVER_SITE)),
    Kind::EVENT,
);

/// An event's message, then its other fields as ` name=value`.
#[derive(Default)]
struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // Writing to a String cannot fail.
        let _ = if field.name() == "message" {
            write!(self.0, "{value:?}")
        } else {
            write!(self.0, " {}={value:?}", field.name())
        };
    }
}

impl<S, L> Layer<S> for Demote<L>
where
    S: Subscriber,
    L: Layer<S>,
{
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(meta) = demoted(event.metadata()) else {
            return self.inner.on_event(event, ctx);
        };
        // Asks the filter below (`RUST_LOG`) about the debug line.
        if !ctx.enabled(meta) {
            return;
        }
        let Some(field) = meta.fields().field("message") else {
            return;
        };
        let mut text = Text::default();
        event.record(&mut text);
        let message = tracing::field::display(&text.0);
        let values = [(&field, Some(&message as &dyn tracing::Value))];
        let values = meta.fields().value_set(&values);
        let line = if event.is_contextual() {
            Event::new(meta, &values)
        } else {
            Event::new_child_of(event.parent().cloned(), meta, &values)
        };
        self.inner.on_event(&line, ctx);
    }

    // Everything else goes to the wrapped layer as it is.

    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        self.inner.on_register_dispatch(subscriber);
    }

    fn on_layer(&mut self, subscriber: &mut S) {
        self.inner.on_layer(subscriber);
    }

    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        self.inner.register_callsite(metadata)
    }

    fn enabled(&self, metadata: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        self.inner.enabled(metadata, ctx)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        self.inner.max_level_hint()
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        self.inner.on_new_span(attrs, id, ctx);
    }

    fn on_record(&self, span: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        self.inner.on_record(span, values, ctx);
    }

    fn on_follows_from(&self, span: &span::Id, follows: &span::Id, ctx: Context<'_, S>) {
        self.inner.on_follows_from(span, follows, ctx);
    }

    fn event_enabled(&self, event: &Event<'_>, ctx: Context<'_, S>) -> bool {
        self.inner.event_enabled(event, ctx)
    }

    fn on_enter(&self, id: &span::Id, ctx: Context<'_, S>) {
        self.inner.on_enter(id, ctx);
    }

    fn on_exit(&self, id: &span::Id, ctx: Context<'_, S>) {
        self.inner.on_exit(id, ctx);
    }

    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        self.inner.on_close(id, ctx);
    }

    fn on_id_change(&self, old: &span::Id, new: &span::Id, ctx: Context<'_, S>) {
        self.inner.on_id_change(old, new, ctx);
    }
}
