//! A gRPC health server (`grpc.health.v1.Health/Check` over HTTP/2, hyper), plain or over
//! TLS, for the `grpc:` probe tests and the blackbox_exporter comparisons.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, channel::Channel};
use hyper::body::Incoming;

/// A health server: `""` and `"orders"` are known (SERVING and NOT_SERVING), `"slow"` never
/// answers, anything else is NOT_FOUND as a trailers-only answer.
async fn answer(
    request: http::Request<Incoming>,
) -> Result<http::Response<Channel<Bytes, Infallible>>, Infallible> {
    let path = request.uri().path().to_string();
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let service = body
        .get(5..)
        .and_then(|m| m.get(2..))
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .unwrap_or_default();
    let (mut tx, channel) = Channel::<Bytes, Infallible>::new(2);
    let grpc = || http::Response::builder().header("content-type", "application/grpc");
    if path != "/grpc.health.v1.Health/Check" {
        return Ok(grpc().header("grpc-status", "12").body(channel).unwrap());
    }
    let status = match service.as_str() {
        "" => 1u8,
        "orders" => 2,
        "slow" => {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                drop(tx);
            });
            return Ok(grpc().body(channel).unwrap());
        }
        other => {
            let message = format!("unknown%20service%20{other}");
            return Ok(grpc()
                .header("grpc-status", "5")
                .header("grpc-message", message)
                .body(channel)
                .unwrap());
        }
    };
    tokio::spawn(async move {
        let _ = tx
            .send_data(Bytes::from(vec![0, 0, 0, 0, 2, 0x08, status]))
            .await;
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        let _ = tx.send_trailers(trailers).await;
    });
    Ok(grpc().body(channel).unwrap())
}

/// Serves the health service on `127.0.0.1:0`, over TLS when `tls` is given.
pub async fn health_server(tls: Option<Arc<rustls::ServerConfig>>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tls = tls.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(answer);
                let builder =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
                match tls {
                    Some(config) => {
                        let Ok(stream) = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await
                        else {
                            return;
                        };
                        let _ = builder
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await;
                    }
                    None => {
                        let _ = builder
                            .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                            .await;
                    }
                }
            });
        }
    });
    addr
}
