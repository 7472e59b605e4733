//! gRPC through the real `certgate` binary: a tonic client over real TLS (with a client
//! certificate, h2 by ALPN) and a tonic server behind the gateway (`protocol: grpc`, h2c).
//! Covers the four RPC kinds, trailers (status, message, custom metadata), deadlines,
//! 16 MB messages, identity metadata, and each gRPC status the gateway produces itself.
//!
//! No protoc: the message is a hand-written prost struct, and the service uses tonic's
//! codegen-free `server::Grpc` / `client::Grpc` APIs, as generated code would.

// tonic's API fixes `Result<_, Status>`; Status is large by design.
#![allow(clippy::result_large_err)]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use common::*;
use futures_util::{Stream, StreamExt};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tonic::body::BoxBody;
use tonic::codec::{ProstCodec, Streaming};
use tonic::codegen::http;
use tonic::metadata::MetadataValue;
use tonic::{Code, Request, Response, Status};

#[derive(Clone, PartialEq, prost::Message)]
pub struct Msg {
    #[prost(string, tag = "1")]
    pub text: String,
    #[prost(bytes = "vec", tag = "2")]
    pub payload: Vec<u8>,
}

const SERVICE: &str = "certgate.test.Echo";
const MAX: usize = 64 * 1024 * 1024;
const ALICE: &str = "CN=alice,O=certgate tests";

fn msg(text: &str) -> Msg {
    Msg {
        text: text.to_string(),
        payload: Vec::new(),
    }
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;
type MsgStream = Pin<Box<dyn Stream<Item = Result<Msg, Status>> + Send>>;

/// What the tonic upstream saw, per method: the request metadata.
#[derive(Default)]
struct Seen {
    calls: Mutex<Vec<(String, http::HeaderMap)>>,
}

impl Seen {
    fn record<T>(&self, method: &str, req: &Request<T>) {
        self.calls
            .lock()
            .unwrap()
            .push((method.to_string(), req.metadata().clone().into_headers()));
    }
    fn count(&self) -> usize {
        self.calls.lock().unwrap().len()
    }
    fn header(&self, method: &str, name: &str) -> Option<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(m, _)| m == method)
            .and_then(|(_, h)| h.get(name))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

fn with_trailer<T>(mut response: Response<T>, value: &'static str) -> Response<T> {
    response
        .metadata_mut()
        .insert("x-custom-trailer", MetadataValue::from_static(value));
    response
}

struct Unary(Arc<Seen>);
impl tonic::server::UnaryService<Msg> for Unary {
    type Response = Msg;
    type Future = BoxFuture<Result<Response<Msg>, Status>>;
    fn call(&mut self, req: Request<Msg>) -> Self::Future {
        self.0.record("Unary", &req);
        Box::pin(async move {
            let m = req.into_inner();
            if m.text == "fail" {
                let mut md = tonic::metadata::MetadataMap::new();
                md.insert(
                    "x-custom-trailer",
                    MetadataValue::from_static("failed-call"),
                );
                return Err(Status::with_metadata(
                    Code::NotFound,
                    "no such thing: custom message",
                    md,
                ));
            }
            if let Some(secs) = m.text.strip_prefix("sleep:") {
                let secs: f64 = secs.parse().unwrap_or(0.0);
                tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            }
            // tonic sends response metadata as headers; the trailer arrives with the status.
            Ok(with_trailer(Response::new(m), "unary"))
        })
    }
}

struct ServerStream(Arc<Seen>);
impl tonic::server::ServerStreamingService<Msg> for ServerStream {
    type Response = Msg;
    type ResponseStream = MsgStream;
    type Future = BoxFuture<Result<Response<MsgStream>, Status>>;
    fn call(&mut self, req: Request<Msg>) -> Self::Future {
        self.0.record("ServerStream", &req);
        let n: usize = req.get_ref().text.parse().unwrap_or(0);
        Box::pin(async move {
            let stream: MsgStream = Box::pin(futures_util::stream::iter(
                (0..n).map(|i| Ok(msg(&i.to_string()))),
            ));
            Ok(Response::new(stream))
        })
    }
}

struct ClientStream(Arc<Seen>);
impl tonic::server::ClientStreamingService<Msg> for ClientStream {
    type Response = Msg;
    type Future = BoxFuture<Result<Response<Msg>, Status>>;
    fn call(&mut self, req: Request<Streaming<Msg>>) -> Self::Future {
        self.0.record("ClientStream", &req);
        Box::pin(async move {
            let mut stream = req.into_inner();
            let (mut n, mut total) = (0usize, 0usize);
            while let Some(m) = stream.message().await? {
                n += 1;
                total += m.payload.len();
            }
            Ok(Response::new(msg(&format!("{n} {total}"))))
        })
    }
}

struct Bidi(Arc<Seen>);
impl tonic::server::StreamingService<Msg> for Bidi {
    type Response = Msg;
    type ResponseStream = MsgStream;
    type Future = BoxFuture<Result<Response<MsgStream>, Status>>;
    fn call(&mut self, req: Request<Streaming<Msg>>) -> Self::Future {
        self.0.record("Bidi", &req);
        Box::pin(async move {
            let stream: MsgStream = Box::pin(
                req.into_inner()
                    .map(|m| m.map(|m| msg(&m.text.to_uppercase()))),
            );
            Ok(Response::new(stream))
        })
    }
}

/// The service, routed by path as tonic-build's generated server does.
#[derive(Clone)]
struct EchoServer(Arc<Seen>);

impl tonic::server::NamedService for EchoServer {
    const NAME: &'static str = SERVICE;
}

impl tonic::codegen::Service<http::Request<BoxBody>> for EchoServer {
    type Response = http::Response<BoxBody>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<BoxBody>) -> Self::Future {
        let seen = self.0.clone();
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<Msg, Msg>::default())
                .apply_max_message_size_config(Some(MAX), Some(MAX));
            let path = req.uri().path().to_string();
            Ok(match path.rsplit('/').next().unwrap_or("") {
                "Unary" => grpc.unary(Unary(seen), req).await,
                "ServerStream" => grpc.server_streaming(ServerStream(seen), req).await,
                "ClientStream" => grpc.client_streaming(ClientStream(seen), req).await,
                "Bidi" => grpc.streaming(Bidi(seen), req).await,
                _ => Status::unimplemented(path).into_http(),
            })
        })
    }
}

/// A tonic server in clear text (h2c) on 127.0.0.1, on its own runtime thread.
fn start_tonic_upstream() -> (SocketAddr, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let service = EchoServer(seen.clone());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            tonic::transport::Server::builder()
                .initial_stream_window_size(Some(8 * 1024 * 1024))
                .initial_connection_window_size(Some(16 * 1024 * 1024))
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
    });
    (addr, seen)
}

/// A tonic channel to the gateway over rustls (h2 by ALPN), trusting the test CA and
/// presenting `identity` when given.
async fn channel(
    pki: &Pki,
    gw: &Gateway,
    identity: Option<&Issued>,
) -> tonic::client::Grpc<tonic::transport::Channel> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(id) => builder
            .with_client_auth_cert(
                vec![id.cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(id.key.serialize_der())),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let addr = gw.addr;
    let connect = tower::service_fn(move |_uri: http::Uri| {
        let connector = connector.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            let name = ServerName::try_from("localhost").unwrap();
            let tls = connector.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    let channel = tonic::transport::Endpoint::from_static("http://localhost")
        .initial_stream_window_size(Some(8 * 1024 * 1024))
        .initial_connection_window_size(Some(16 * 1024 * 1024))
        .connect_with_connector(connect)
        .await
        .unwrap();
    tonic::client::Grpc::new(channel)
        .max_decoding_message_size(MAX)
        .max_encoding_message_size(MAX)
}

fn path(method: &str) -> http::uri::PathAndQuery {
    format!("/{SERVICE}/{method}").parse().unwrap()
}

async fn unary(
    grpc: &mut tonic::client::Grpc<tonic::transport::Channel>,
    req: Request<Msg>,
) -> Result<Response<Msg>, Status> {
    grpc.ready().await.unwrap();
    grpc.unary(req, path("Unary"), ProstCodec::default()).await
}

fn grpc_config(pki: &Pki, upstream: SocketAddr, route_extra: &str) -> String {
    // Generous: a 17 MB message crosses three debug-built h2 stacks before the reply.
    grpc_config_read(pki, upstream, route_extra, "30s")
}

fn grpc_config_read(pki: &Pki, upstream: SocketAddr, route_extra: &str, read: &str) -> String {
    let dir = pki.dir.path().display();
    format!(
        r#"servers:
  - name: api
    listen: ["{{listen}}"]
    tls:
      cert: {dir}/server.crt
      key: {dir}/server.key
    client_auth:
      verify: on
      ca: {dir}/ca.crt
    routes:
      - match: {{ grpc_service: {SERVICE} }}
        upstream: grpc
        max_body_size: 64m
        timeouts: {{ connect: 1s, read: {read}, send: 10s }}
{route_extra}upstreams:
  grpc:
    servers: ["{upstream}"]
    protocol: grpc
"#
    )
}

#[tokio::test]
async fn four_rpc_kinds_with_trailers_and_identity() {
    let pki = Pki::new();
    let (upstream, seen) = start_tonic_upstream();
    let gw = start_gateway(&pki, &grpc_config(&pki, upstream, ""));
    let alice = client_cert("alice", &pki.ca);
    let mut grpc = channel(&pki, &gw, Some(&alice)).await;

    let mut req = Request::new(msg("hello"));
    req.metadata_mut()
        .insert("x-ssl-client-s-dn", MetadataValue::from_static("CN=admin"));
    let reply = unary(&mut grpc, req).await.unwrap();
    assert_eq!(reply.get_ref().text, "hello");
    assert_eq!(
        reply.metadata().get("x-custom-trailer").unwrap(),
        "unary",
        "{}",
        gw.log()
    );

    grpc.ready().await.unwrap();
    let mut stream = grpc
        .server_streaming(
            Request::new(msg("100")),
            path("ServerStream"),
            ProstCodec::<Msg, Msg>::default(),
        )
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while let Some(m) = stream.message().await.unwrap() {
        got.push(m.text);
    }
    assert_eq!(got, (0..100).map(|i| i.to_string()).collect::<Vec<_>>());
    let trailers = stream.trailers().await.unwrap();
    assert!(trailers.is_some(), "grpc-status arrives as a trailer");

    grpc.ready().await.unwrap();
    let outbound = futures_util::stream::iter((0..40).map(|_| Msg {
        text: String::new(),
        payload: vec![7u8; 4096],
    }));
    let reply = grpc
        .client_streaming(
            Request::new(outbound),
            path("ClientStream"),
            ProstCodec::<Msg, Msg>::default(),
        )
        .await
        .unwrap();
    assert_eq!(reply.get_ref().text, format!("40 {}", 40 * 4096));

    // Bidi in lock-step: each reply must come back before the next message is sent.
    let (tx, rx) = tokio::sync::mpsc::channel::<Msg>(1);
    grpc.ready().await.unwrap();
    let mut replies = grpc
        .streaming(
            Request::new(tokio_stream::wrappers::ReceiverStream::new(rx)),
            path("Bidi"),
            ProstCodec::<Msg, Msg>::default(),
        )
        .await
        .unwrap()
        .into_inner();
    for word in ["one", "two", "three"] {
        tx.send(msg(word)).await.unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(5), replies.message())
            .await
            .expect("bidi reply must not wait for the end of the request stream")
            .unwrap()
            .unwrap();
        assert_eq!(reply.text, word.to_uppercase());
    }
    drop(tx);
    assert!(replies.message().await.unwrap().is_none());

    for method in ["Unary", "ServerStream", "ClientStream", "Bidi"] {
        assert_eq!(
            seen.header(method, "x-ssl-client-s-dn").as_deref(),
            Some(ALICE),
            "{method}"
        );
    }
}

#[tokio::test]
async fn status_message_trailers_big_messages_and_deadlines() {
    let pki = Pki::new();
    let (upstream, seen) = start_tonic_upstream();
    let gw = start_gateway(&pki, &grpc_config(&pki, upstream, ""));
    let alice = client_cert("alice", &pki.ca);
    let mut grpc = channel(&pki, &gw, Some(&alice)).await;

    let status = unary(&mut grpc, Request::new(msg("fail")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), "no such thing: custom message");
    assert_eq!(
        status.metadata().get("x-custom-trailer").unwrap(),
        "failed-call"
    );

    let payload: Vec<u8> = (0..17 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let reply = unary(
        &mut grpc,
        Request::new(Msg {
            text: "big".into(),
            payload: payload.clone(),
        }),
    )
    .await
    .unwrap();
    assert!(reply.get_ref().payload == payload, "16 MB+ message intact");

    // The client's deadline travels as grpc-timeout and ends the call on time (tonic's
    // own timer reports CANCELLED "Timeout expired", the gateway's DEADLINE_EXCEEDED:
    // whichever fires first).
    let mut req = Request::new(msg("sleep:3"));
    req.set_timeout(Duration::from_millis(400));
    let started = std::time::Instant::now();
    let status = unary(&mut grpc, req).await.unwrap_err();
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(2500));
    let timeout = seen.header("Unary", "grpc-timeout").unwrap_or_default();
    assert!(
        timeout.ends_with('m') || timeout.ends_with('u'),
        "{timeout:?}"
    );

    // No client deadline: the route's read timeout (1s) ends the call as
    // DEADLINE_EXCEEDED from the gateway itself.
    drop(gw);
    let gw = start_gateway(&pki, &grpc_config_read(&pki, upstream, "", "1s"));
    let mut grpc = channel(&pki, &gw, Some(&alice)).await;
    let status = unary(&mut grpc, Request::new(msg("sleep:2.5")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(status.message(), "upstream timed out");
}

#[tokio::test]
async fn gateway_rejections_are_grpc_statuses_and_never_forwarded() {
    let pki = Pki::new();
    let (upstream, seen) = start_tonic_upstream();
    let alice = client_cert("alice", &pki.ca);

    let gw = start_gateway(&pki, &grpc_config(&pki, upstream, ""));
    let mut anonymous = channel(&pki, &gw, None).await;
    let status = unary(&mut anonymous, Request::new(msg("anon")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    let mallory = client_cert("mallory", &ca("Other CA"));
    let mut foreign = channel(&pki, &gw, Some(&mallory)).await;
    let status = unary(&mut foreign, Request::new(msg("foreign")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    drop(gw);

    let allow = "        allow:\n          - cn: [somebody-else]\n";
    let config = grpc_config(&pki, upstream, "").replace(
        "        max_body_size: 64m\n",
        &format!("        max_body_size: 64m\n{allow}"),
    );
    let gw = start_gateway(&pki, &config);
    let mut grpc = channel(&pki, &gw, Some(&alice)).await;
    let status = unary(&mut grpc, Request::new(msg("denied")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    drop(gw);
    assert_eq!(
        seen.count(),
        0,
        "a rejected call must never reach the upstream"
    );

    let dead: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gw = start_gateway(&pki, &grpc_config(&pki, dead, ""));
    let mut grpc = channel(&pki, &gw, Some(&alice)).await;
    let status = unary(&mut grpc, Request::new(msg("nobody home")))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
}

#[tokio::test]
async fn grpc_timeout_bounds_the_wait_for_the_upstream() {
    // A raw gRPC call over HTTP/2 (reqwest: no client-side timer) to an upstream that
    // ignores deadlines (the hyper test upstream's /slow answers after 3s, with no
    // grpc-status; the route's read timeout is 5s): only the gateway can end it early.
    let pki = Pki::new();
    let (upstream, seen) = start_upstream();
    let dir = pki.dir.path().display().to_string();
    let gw = start_gateway(
        &pki,
        &base_config(
            &pki,
            upstream,
            &format!("      verify: on\n      ca: {dir}/ca.crt\n"),
            "",
        )
        .replace("read: 1s", "read: 5s"),
    );
    let alice = client_cert("alice", &pki.ca);
    let http = client(&pki, &gw, Some((&[&alice], &alice)), true);
    let encoded = prost::Message::encode_to_vec(&msg("hello"));
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
    frame.extend_from_slice(&encoded);

    let started = std::time::Instant::now();
    let response = http
        .post(gw.url("/slow"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "200m")
        .body(frame)
        .send()
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers().get("grpc-status").unwrap(),
        "4",
        "trailers-only DEADLINE_EXCEEDED: {:?}",
        response.headers()
    );
    assert!(elapsed < Duration::from_millis(2500), "{elapsed:?}");
    assert_eq!(seen.header("grpc-timeout").as_deref(), Some("200m"));
}
