//! The admin listener: actix-http's HTTP/1.1 service over [`AdminIo`], on
//! one actix-server worker thread.
//!
//! Why not actix-web's `HttpServer`: it hands the socket to actix-http
//! directly, and the 400, 408 and 431 that actix-http answers by itself
//! would leave with an empty body. The wiring here is `HttpServer`'s, with
//! the stream wrapped first.
//!
//! Limits, so that no client can hold the listener:
//! - one request per connection (no keep-alive): each request is a
//!   connection's first, which is the only one actix-http times;
//! - the headers within [`REQUEST_TIMEOUT`] of the accept (actix-http
//!   answers 408), and the body within the same bound, counted from the
//!   same instant ([`RequestDeadline`], enforced where the body is read);
//! - a closing connection lingers at most a second for the client's
//!   unread input;
//! - with TLS (`--admin-tls-cert`), the handshake within
//!   [`REQUEST_TIMEOUT`] of the accept, before the request's own bound.

use std::fmt;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

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

/// The bound on one whole request, headers and body.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a closing connection may still read the client's input.
const LINGER: Duration = Duration::from_secs(1);

/// Pending connections the kernel queues before `accept`.
const BACKLOG: i32 = 1024;

/// When the request on a connection must have arrived whole.
#[derive(Debug, Clone, Copy)]
pub struct RequestDeadline(pub Instant);

impl RequestDeadline {
    /// The deadline of `req`'s connection; from now where it has none
    /// (a request that did not come through [`serve`]).
    pub fn of(req: &HttpRequest) -> Instant {
        req.conn_data::<RequestDeadline>()
            .map_or_else(|| Instant::now() + REQUEST_TIMEOUT, |d| d.0)
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
                .keep_alive(KeepAlive::Disabled)
                .client_request_timeout(REQUEST_TIMEOUT)
                .client_disconnect_timeout(LINGER)
                .local_addr(addr)
                .on_connect_ext(|io: &AdminIo<Transport>, ext| {
                    ext.insert(RequestDeadline(io.accepted() + REQUEST_TIMEOUT));
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
