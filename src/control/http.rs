//! The little HTTP/1.1 server under the health and admin endpoints, on hyper.
//!
//! Handlers are plain functions from a method and path to a [`Reply`]: everything served here is
//! computed from counters in microseconds, so there is no need for async handlers or routing crates.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// A response, before it becomes HTTP.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) content_type: &'static str,
    pub(crate) body: Bytes,
}

impl Reply {
    pub(crate) fn text(status: StatusCode, body: impl Into<Bytes>) -> Reply {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }

    pub(crate) fn json(value: &impl serde::Serialize) -> Reply {
        match serde_json::to_vec_pretty(value) {
            Ok(mut body) => {
                body.push(b'\n');
                Reply {
                    status: StatusCode::OK,
                    content_type: "application/json",
                    body: body.into(),
                }
            }
            Err(_) => Reply::text(StatusCode::INTERNAL_SERVER_ERROR, "error\n"),
        }
    }

    pub(crate) fn not_found() -> Reply {
        Reply::text(StatusCode::NOT_FOUND, "not found\n")
    }
}

/// Routes a request.
pub(crate) type Handler = Arc<dyn Fn(&Method, &str) -> Reply + Send + Sync>;

/// Connections served at once per listener; more wait in the accept queue. Health checkers and one
/// Prometheus need a handful.
const MAX_CONNECTIONS: usize = 64;
/// A client that has not sent its request headers by then is cut off (slowloris).
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest life of one connection (keep-alive included).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);

/// Binds a TCP listener with SO_REUSEADDR, so the health port can be closed and opened again at once
/// while old connections sit in TIME_WAIT.
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(128)?;
    TcpListener::from_std(socket.into())
}

/// How connections are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reuse {
    /// One request per connection: load-balancer checks open a new one each time anyway, and an
    /// idle connection must not hold one of the limited slots of the health port.
    Close,
    /// HTTP keep-alive, for scrapers.
    KeepAlive,
}

/// Serves every connection on `listener` until the task is dropped.
pub(crate) async fn serve(listener: TcpListener, handler: Handler, reuse: Reuse) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        accept_one(&listener, &handler, &limit, reuse).await;
    }
}

/// Accepts one connection and serves it on its own task.
pub(crate) async fn accept_one(
    listener: &TcpListener,
    handler: &Handler,
    limit: &Arc<Semaphore>,
    reuse: Reuse,
) {
    let Ok(permit) = limit.clone().acquire_owned().await else {
        return;
    };
    match listener.accept().await {
        Ok((stream, _)) => {
            let handler = handler.clone();
            tokio::spawn(async move {
                connection(stream, handler, reuse).await;
                drop(permit);
            });
        }
        Err(error) => {
            // EMFILE and friends: back off instead of spinning.
            tracing::warn!(message = "Failed to accept a connection.", %error);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn connection(stream: TcpStream, handler: Handler, reuse: Reuse) {
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let reply = handler(req.method(), req.uri().path());
        let mut response = Response::new(Full::new(reply.body));
        *response.status_mut() = reply.status;
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(reply.content_type),
        );
        std::future::ready(Ok::<_, Infallible>(response))
    });
    let result = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(reuse == Reuse::KeepAlive)
        .serve_connection(TokioIo::new(stream), service);
    // Whatever a client does, a connection ends; a stuck one must not keep its slot for ever.
    let result = match tokio::time::timeout(CONNECTION_LIFETIME, result).await {
        Ok(r) => r,
        Err(_) => return,
    };
    if let Err(error) = result {
        tracing::debug!(message = "HTTP connection ended with an error.", %error);
    }
}
