//! The admin listener: actix-http's HTTP/1.1 service over [`AdminIo`], on
//! one actix-server worker thread.
//!
//! Why not actix-web's `HttpServer`: it hands the socket to actix-http
//! directly, and the 400, 408 and 431 that actix-http answers by itself
//! would leave with an empty body. The wiring here is `HttpServer`'s, with
//! the stream wrapped first.
//!
//! Limits, so that no client can hold the listener (enforced by
//! [`AdminIo`], which hands actix-http one request at a time):
//! - connections are kept alive, and closed after [`IDLE_TIMEOUT`] with no
//!   request under way;
//! - each request's head and body within [`REQUEST_TIMEOUT`] of its first
//!   byte (the head timed by `AdminIo`, the body where it is read, through
//!   the [`RequestClock`] both share);
//! - nothing after an answer carrying `Connection: close` is read or acted
//!   on;
//! - a closing connection lingers at most a second for the client's
//!   unread input;
//! - with TLS (`--admin-tls-cert`), the handshake within
//!   [`REQUEST_TIMEOUT`] of the accept, before the first request's bound.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use actix_http::body::MessageBody;
use actix_http::{HttpService, KeepAlive, Request, Response};
use actix_server::{Server, ServerBuilder};
use actix_service::{
    IntoServiceFactory, Service, ServiceFactory, ServiceFactoryExt as _, fn_service, map_config,
};
use actix_web::dev::AppConfig;
use actix_web::{Error, HttpRequest};
use conn_actor::Transport;
use conn_actor::transport::tls::{self, TlsAcceptor};
use tokio::net::TcpStream;

use super::wire::AdminIo;
pub use super::wire::{IDLE_TIMEOUT, REQUEST_TIMEOUT, RequestClock};

/// How long a closing connection may still read the client's input.
const LINGER: Duration = Duration::from_secs(1);

/// Pending connections the kernel queues before `accept`.
const BACKLOG: i32 = 1024;

impl RequestClock {
    /// When `req` must have arrived whole; from now where its connection
    /// has no clock (a request that did not come through [`serve`]).
    pub fn deadline_of(req: &HttpRequest) -> tokio::time::Instant {
        req.conn_data::<RequestClock>().map_or_else(
            || tokio::time::Instant::now() + REQUEST_TIMEOUT,
            RequestClock::deadline,
        )
    }
}

/// Binds `addr` the way `HttpServer::bind` does (`SO_REUSEADDR`).
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Serves the apps `factory` builds on `listener`, over TLS when `tls` is
/// given; the server runs once it is polled.
pub fn serve<F, I, S, B>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    factory: F,
) -> io::Result<Server>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<Error> + 'static,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    let addr = listener.local_addr()?;
    let server = ServerBuilder::new()
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen("admin", listener, move || {
            let app = factory()
                .into_factory()
                .map_err(|err| err.into().error_response());
            let http = HttpService::build()
                // Both bounds are `AdminIo`'s: actix-http would time only
                // a connection's first request.
                .keep_alive(KeepAlive::Os)
                .client_request_timeout(Duration::ZERO)
                .client_disconnect_timeout(LINGER)
                .local_addr(addr)
                .on_connect_ext(|io: &AdminIo<Transport>, ext| {
                    ext.insert(io.clock());
                })
                .h1(map_config(app, |_| AppConfig::default()));
            let tls = tls.clone();
            fn_service(move |stream: TcpStream| {
                let tls = tls.clone();
                async move {
                    // Best effort: a socket that refuses it is still served.
                    let _ = stream.set_nodelay(true);
                    let peer = stream.peer_addr().ok();
                    let io = match tls {
                        None => Transport::from(stream),
                        Some(acceptor) => tls::handshake(&acceptor, stream, REQUEST_TIMEOUT)
                            .await
                            .map(Transport::from)
                            .map_err(|err| {
                                tracing::debug!(?peer, error = %err, "admin TLS handshake failed");
                                actix_http::error::DispatchError::Io(io::Error::other(err))
                            })?,
                    };
                    Ok::<_, actix_http::error::DispatchError>((AdminIo::new(io), peer))
                }
            })
            .and_then(http)
        })?
        .run();
    Ok(server)
}
