//! One HTTP/1.1 exchange on a fresh connection: the request with its headers (credentials
//! only to the probe's own origin), hyper's handshake and send, the body read up to
//! `max_body`, and the words a failure reason uses when the peer resets, closes or cuts a body
//! short. Also the base64 of the basic-auth header.
//!
//! This file decides nothing about redirects or expectations: it returns the head and body
//! (kept only when an expectation reads it) to `mod.rs`, which follows redirects, and to
//! `expect.rs`, which judges them.

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use super::HttpProbe;
use super::redirects::Credential;
use crate::basics::units::format_size;
use crate::probe::net;
use crate::probe::{Failure, Trace};

/// The most one read of a response takes in.
const READ_BUFFER: usize = 64 * 1024;

/// A `compression:` the probe asks for and decompresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Gzip,
    /// HTTP's `deflate`: zlib-wrapped DEFLATE.
    Deflate,
    /// `br`: Brotli (RFC 7932).
    Brotli,
    /// `deflate` as blackbox_exporter reads it: raw DEFLATE, without zlib's wrapper (Go's
    /// `compress/flate`); for blackbox modules.
    RawDeflate,
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Gzip => "gzip",
            Encoding::Deflate | Encoding::RawDeflate => "deflate",
            Encoding::Brotli => "br",
        }
    }

    /// The body decompressed, at most `limit` bytes of it: a small answer that inflates to
    /// gigabytes (a "zip bomb") stops at the limit and fails the run.
    fn decompress(self, body: &[u8], limit: u64) -> Result<Vec<u8>, Failure> {
        use std::io::Read;
        let reader: Box<dyn Read + '_> = match self {
            Encoding::Gzip => Box::new(flate2::read::GzDecoder::new(body)),
            Encoding::Deflate => Box::new(flate2::read::ZlibDecoder::new(body)),
            Encoding::Brotli => Box::new(brotli_decompressor::Decompressor::new(body, 4096)),
            Encoding::RawDeflate => Box::new(flate2::read::DeflateDecoder::new(body)),
        };
        let mut out = Vec::new();
        reader.take(limit + 1).read_to_end(&mut out).map_err(|e| {
            Failure::Body(format!("cannot decompress the {} body: {e}", self.name()))
        })?;
        if out.len() as u64 > limit {
            return Err(Failure::Body(format!(
                "decompressed body larger than max_body {}, stopped reading",
                format_size(limit)
            )));
        }
        Ok(out)
    }
}

impl HttpProbe {
    /// One request on a fresh connection; returns the head and (up to `max_body`) the body.
    pub(super) async fn exchange(
        &self,
        url: &Uri,
        method: &Method,
        body: Bytes,
        credentials: bool,
        trace: &mut Trace,
    ) -> Result<Response, Failure> {
        let https = url.scheme() == Some(&http::uri::Scheme::HTTPS);
        let host = url.host().unwrap_or_default();
        let port = url.port_u16().unwrap_or(if https { 443 } else { 80 });
        let server_name = self.tls_server_name.as_deref().unwrap_or(host);
        let tls = https.then(|| (server_name, self.tls.clone()));
        let stream = match self.proxy_for(url) {
            None => net::open(host, port, &self.resolver, tls, trace).await?,
            Some(proxy) => proxy.open(host, port, &self.resolver, tls, trace).await?,
        };

        // HTTP/2 when the probe offered it (`http2: true`) and the server chose it in ALPN.
        let h2 = matches!(&stream, net::Stream::Tls(tls) if tls.get_ref().1.alpn_protocol() == Some(b"h2"));
        trace.enter("processing");
        // The oauth2 token (kept, or fetched now) goes where the other credentials go. Boxed:
        // the token request's future would otherwise swell every probe's run, oauth2 or not.
        let token = match (&self.oauth2, credentials) {
            (Some(oauth2), true) => Some(Box::pin(oauth2.authorization()).await?),
            _ => None,
        };
        let mut request = self.request(url, method, body, credentials, token)?;
        let handshake_failed = |e: hyper::Error| Failure::Http(e.to_string());
        let send_failed = |e: hyper::Error| Failure::Http(describe_request_error(&e));
        // The connection is driven in this task beside the exchange: no task per probe, and
        // a deadline that drops the run drops the connection with it.
        if h2 {
            // HTTP/2 names the target in `:authority` and has no connection headers.
            *request.uri_mut() = url.clone();
            request.headers_mut().remove(http::header::HOST);
            request.headers_mut().remove(http::header::CONNECTION);
            let (mut sender, conn) =
                hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                    .await
                    .map_err(handshake_failed)?;
            alongside(conn, async {
                let response = sender.send_request(request).await.map_err(send_failed)?;
                self.read(response, https, trace).await
            })
            .await
        } else {
            // A read buffer of 64 KiB (hyper's default grows to ~400 KB): a body past
            // `max_body` is cut within one such read, and a response's head must fit in it.
            let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
                .max_buf_size(READ_BUFFER)
                .handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                .await
                .map_err(handshake_failed)?;
            alongside(conn, async {
                let response = sender.send_request(request).await.map_err(send_failed)?;
                self.read(response, https, trace).await
            })
            .await
        }
    }

    /// The head and (up to `max_body`, decompressed) the body of `response`.
    async fn read(
        &self,
        response: http::Response<hyper::body::Incoming>,
        https: bool,
        trace: &mut Trace,
    ) -> Result<Response, Failure> {
        trace.enter("transfer");
        let (head, mut incoming) = response.into_parts();
        let promised = head
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        // A compressed body is kept to be decompressed (its size is what counts).
        let encoding = self.compression.filter(|e| {
            self.decompress_always
                || (head.headers.get(http::header::CONTENT_ENCODING))
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.trim().eq_ignore_ascii_case(e.name()))
        });
        let keep = self.expect.needs_body() || encoding.is_some();
        let mut bytes = Vec::new();
        let mut size = 0u64;
        while let Some(frame) = incoming.frame().await {
            let frame =
                frame.map_err(|e| Failure::Body(describe_body_error(&e, size, promised)))?;
            if let Ok(data) = frame.into_data() {
                size += data.len() as u64;
                if size > self.max_body {
                    trace.signal("body_bytes", size as f64);
                    return Err(Failure::Body(format!(
                        "larger than max_body {}, stopped reading",
                        format_size(self.max_body)
                    )));
                }
                if keep {
                    bytes.extend_from_slice(&data);
                }
            }
        }
        trace.signal("status", head.status.as_u16() as f64);
        trace.signal("http_version", version_number(head.version));
        trace.signal("http_ssl", f64::from(u8::from(https)));
        // As blackbox_exporter: -1 when the answer announced no length.
        trace.signal("content_length", promised.map_or(-1.0, |n| n as f64));
        if let Some(encoding) = encoding {
            // A body that does not decompress counts 0 bytes, as in blackbox_exporter.
            trace.signal("body_bytes", 0.0);
            bytes = encoding.decompress(&bytes, self.max_body)?;
            size = bytes.len() as u64;
        }
        trace.signal("body_bytes", size as f64);
        Ok(Response { head, body: bytes })
    }

    fn request(
        &self,
        url: &Uri,
        method: &Method,
        body: Bytes,
        credentials: bool,
        token: Option<HeaderValue>,
    ) -> Result<Request<Full<Bytes>>, Failure> {
        // Through a proxy a plain request names the whole URL (absolute form); a tunnelled
        // https one is the target's own, as without a proxy.
        let through_proxy =
            self.proxy_for(url).is_some() && url.scheme() != Some(&http::uri::Scheme::HTTPS);
        let (target, host) = match &self.first_hop {
            Some((target, host)) if !through_proxy && url == &self.url => {
                (target.clone(), host.clone())
            }
            _ if through_proxy => (url.clone(), host_header(url)?),
            _ => target_and_host(url)?,
        };
        let mut builder = Request::builder().method(method.clone()).uri(target);
        let headers = builder
            .headers_mut()
            .ok_or_else(|| Failure::Http("cannot build request".into()))?;
        headers.insert(http::header::HOST, host);
        headers.insert(
            http::header::USER_AGENT,
            HeaderValue::from_static(concat!("slowburn/", env!("CARGO_PKG_VERSION"))),
        );
        headers.insert(http::header::ACCEPT, HeaderValue::from_static("*/*"));
        if let Some(encoding) = self.compression {
            headers.insert(
                http::header::ACCEPT_ENCODING,
                HeaderValue::from_static(encoding.name()),
            );
        }
        // The target closes first and keeps the TIME_WAIT, as with blackbox_exporter.
        headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        for (name, value, credential) in &self.headers {
            if credentials || *credential == Credential::No {
                headers.insert(name.clone(), value.clone());
            }
        }
        if let Some(token) = token {
            headers.insert(http::header::AUTHORIZATION, token);
        }
        builder
            .body(Full::new(body))
            .map_err(|e| Failure::Http(e.to_string()))
    }
}

/// The origin-form request target (path and query) of `url` and its `Host` header.
pub(super) fn target_and_host(url: &Uri) -> Result<(Uri, HeaderValue), Failure> {
    let target = match url.path_and_query() {
        Some(p) => Uri::from_maybe_shared(Bytes::copy_from_slice(p.as_str().as_bytes())),
        None => Ok(Uri::from_static("/")),
    }
    .map_err(|e| Failure::Http(e.to_string()))?;
    Ok((target, host_header(url)?))
}

/// The `Host` header of `url`: its host, and its port when the URL gives one.
fn host_header(url: &Uri) -> Result<HeaderValue, Failure> {
    let host = match url.port() {
        Some(port) => format!("{}:{}", url.host().unwrap_or_default(), port),
        None => url.host().unwrap_or_default().to_string(),
    };
    HeaderValue::from_str(&host).map_err(|e| Failure::Http(e.to_string()))
}

/// Standard base64 with padding, for the basic-auth header.
pub(crate) fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A response head and as much of its body as was kept.
pub(super) struct Response {
    pub(super) head: http::response::Parts,
    pub(super) body: Vec<u8>,
}

/// An HTTP version as blackbox_exporter exports it: 1.0, 1.1, 2 or 3.
pub(crate) fn version_number(version: http::Version) -> f64 {
    match version {
        http::Version::HTTP_09 => 0.9,
        http::Version::HTTP_10 => 1.0,
        http::Version::HTTP_2 => 2.0,
        http::Version::HTTP_3 => 3.0,
        _ => 1.1,
    }
}

/// The innermost I/O error under a hyper error, if any.
fn io_cause(e: &hyper::Error) -> Option<&std::io::Error> {
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        source = cause.source();
    }
    None
}

/// What went wrong with an I/O error, in the words a reason needs (hyper's own text is
/// "connection error", which says nothing).
fn io_words(io: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match io.kind() {
        ErrorKind::ConnectionReset => "connection reset by the peer".into(),
        ErrorKind::ConnectionAborted => "connection aborted".into(),
        ErrorKind::BrokenPipe => "connection closed by the peer while sending".into(),
        ErrorKind::UnexpectedEof => "connection closed by the peer".into(),
        _ => io.to_string(),
    }
}

/// Why sending a request or reading its response head failed.
fn describe_request_error(e: &hyper::Error) -> String {
    match io_cause(e) {
        Some(io) => format!("{} before a response", io_words(io)),
        None if e.is_incomplete_message() => "connection closed before a response".into(),
        None if e.is_parse() || e.is_parse_status() => format!("invalid response: {e}"),
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

/// Why reading the body stopped after `read` bytes, of `promised` if the head said.
fn describe_body_error(e: &hyper::Error, read: u64, promised: Option<u64>) -> String {
    let progress = match promised {
        Some(len) => format!("after {read} of {len} bytes"),
        None => format!("after {read} bytes"),
    };
    match io_cause(e) {
        Some(io) if io.kind() != std::io::ErrorKind::UnexpectedEof => {
            format!("{} {progress}", io_words(io))
        }
        _ if e.is_incomplete_message() || io_cause(e).is_some() => {
            format!("connection closed {progress}: the body is shorter than promised")
        }
        _ => format!("read failed {progress}: {e}"),
    }
}

/// Polls `conn` (the connection's I/O) beside `exchange` until the exchange is done; the
/// connection may finish first (the peer closed after the body), the exchange then ends alone.
async fn alongside<C: Future, E: Future>(conn: C, exchange: E) -> E::Output {
    let mut conn = std::pin::pin!(conn);
    let mut exchange = std::pin::pin!(exchange);
    let mut conn_done = false;
    std::future::poll_fn(|cx| {
        if !conn_done && conn.as_mut().poll(cx).is_ready() {
            conn_done = true;
        }
        exchange.as_mut().poll(cx)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("user:pass", "dXNlcjpwYXNz"),
        ] {
            assert_eq!(base64(input.as_bytes()), want);
        }
    }
}
