//! The link end to end on loopback: real TLS 1.3 and HTTP/2 between a listener and dialers
//! that do or do not hold the cluster secret.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::post;
use bytes::Bytes;
use clrk_link::proof::{EXPORTER_LABEL, SessionProofs, Side};
use clrk_link::{ClusterSecret, LinkClient, LinkError, LinkLimits, LinkServer, PROOF_HEADER, tls};
use futures::StreamExt as _;
use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::io::AsyncReadExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Generous: the machine may be loaded.
const DEADLINE: Duration = Duration::from_secs(30);

fn secret(byte: u8) -> ClusterSecret {
    ClusterSecret::from_bytes(&[byte; 32]).unwrap()
}

/// A worker's listener serving `/echo` (the request body streamed back as it arrives) and
/// `/count` (counts calls), with the calls counter.
async fn worker(secret: ClusterSecret, limits: LinkLimits) -> (SocketAddr, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let router = Router::new()
        .route(
            "/echo",
            post(|body: Body| async move { Body::from_stream(body.into_data_stream()) }),
        )
        .route(
            "/count",
            post(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                async { "counted" }
            }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = LinkServer::new(secret, limits).unwrap();
    tokio::spawn(server.serve(listener, router, CancellationToken::new()));
    (addr, calls)
}

fn post_to(path: &str, body: Body) -> Request<Body> {
    Request::post(path).body(body).unwrap()
}

#[tokio::test]
async fn a_dialer_with_the_secret_streams_both_ways_at_once() {
    let (addr, _) = worker(secret(1), LinkLimits::default()).await;
    let client = LinkClient::new(secret(1)).unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
    let body = Body::new(StreamBody::new(futures::stream::unfold(
        rx,
        |mut rx| async { rx.recv().await.map(|f| (f, rx)) },
    )));
    let response = tokio::time::timeout(DEADLINE, async {
        // The request is still open: the response starts before its body ends.
        tx.send(Ok(Frame::data(Bytes::from_static(b"first "))))
            .await
            .unwrap();
        client.request(addr, post_to("/echo", body)).await.unwrap()
    })
    .await
    .expect("the worker answered while the request was open");
    assert_eq!(response.status(), StatusCode::OK);
    let mut stream = response.into_body().into_data_stream();
    let first = tokio::time::timeout(DEADLINE, stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"first ");
    tx.send(Ok(Frame::data(Bytes::from_static(b"second"))))
        .await
        .unwrap();
    let second = tokio::time::timeout(DEADLINE, stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(&second[..], b"second");
    drop(tx);
    // The end of the request ends the response (HTTP/2 may mark it with an empty frame).
    let rest = tokio::time::timeout(DEADLINE, stream.map(Result::unwrap).collect::<Vec<_>>())
        .await
        .expect("the response ended with the request");
    assert!(rest.iter().all(Bytes::is_empty), "{rest:?}");

    // The connection is reused: many requests, one after the other and at once.
    let answers = futures::future::join_all((0..20).map(|i| {
        let client = client.clone();
        async move {
            let response = client
                .request(addr, post_to("/echo", Body::from(format!("n{i}"))))
                .await
                .unwrap();
            response.into_body().collect().await.unwrap().to_bytes()
        }
    }))
    .await;
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(answer, format!("n{i}").as_bytes());
    }
}

#[tokio::test]
async fn a_dialer_without_the_secret_is_refused_and_nothing_runs() {
    let (addr, calls) = worker(secret(1), LinkLimits::default()).await;
    let stranger = LinkClient::new(secret(2)).unwrap();
    let error = stranger
        .request(addr, post_to("/count", Body::empty()))
        .await
        .unwrap_err();
    assert!(matches!(error, LinkError::Refused { .. }), "{error}");
    assert!(
        error.to_string().contains("cluster secret file differs"),
        "{error}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    let member = LinkClient::new(secret(1)).unwrap();
    let response = member
        .request(addr, post_to("/count", Body::empty()))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// A TLS + HTTP/2 connection made by hand, as an attacker would, with the value its session
/// exports.
async fn raw_connection(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<Body>,
    [u8; 32],
    tokio::task::JoinHandle<()>,
) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(tls::client_config().unwrap());
    let tls = connector
        .connect(ServerName::try_from(tls::SERVER_NAME).unwrap(), tcp)
        .await
        .unwrap();
    let exported = tls
        .get_ref()
        .1
        .export_keying_material([0u8; 32], EXPORTER_LABEL, None)
        .unwrap();
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    (send, exported, task)
}

async fn status_with_proof(
    send: &mut hyper::client::conn::http2::SendRequest<Body>,
    proof: &str,
) -> StatusCode {
    let mut request = post_to("/count", Body::empty());
    request
        .headers_mut()
        .insert(PROOF_HEADER, proof.parse().unwrap());
    send.ready().await.unwrap();
    send.send_request(request).await.unwrap().status()
}

#[tokio::test]
async fn a_proof_replayed_on_another_connection_is_refused() {
    let (addr, calls) = worker(secret(1), LinkLimits::default()).await;
    let (mut first, exported, _a) = raw_connection(addr).await;
    let proof = SessionProofs::new(&secret(1), exported).proof(Side::Dialer);
    // The hand-made request is right: on its own connection it is served.
    assert_eq!(status_with_proof(&mut first, &proof).await, StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let (mut second, _, _b) = raw_connection(addr).await;
    assert_eq!(
        status_with_proof(&mut second, &proof).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the replayed request ran");
}

#[tokio::test]
async fn a_listener_that_cannot_prove_the_secret_is_not_believed() {
    // A fake worker: the link's TLS and HTTP/2, answering 200 to anything, with no proof.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls::server_config().unwrap());
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let tls = acceptor.accept(tcp).await.unwrap();
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(Body::from("forged")))
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    let client = LinkClient::new(secret(1)).unwrap();
    let error = client
        .request(addr, post_to("/count", Body::empty()))
        .await
        .unwrap_err();
    assert!(
        matches!(error, LinkError::PeerNotAuthenticated { .. }),
        "{error}"
    );
}

#[tokio::test]
async fn connections_that_never_prove_themselves_are_closed() {
    let limits = LinkLimits {
        handshake_timeout: Duration::from_secs(1),
        ..LinkLimits::default()
    };
    let (addr, _) = worker(secret(1), limits).await;

    // No TLS at all: closed once the handshake time is up.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(DEADLINE, silent.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0) | Err(_))), "{read:?}");

    // TLS and HTTP/2, but no request: closed too.
    let (_send, _, task) = raw_connection(addr).await;
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("an idle unproven connection was closed")
        .unwrap();

    // A wrong proof: 401, then the connection is closed.
    let (mut send, _, task) = raw_connection(addr).await;
    assert_eq!(
        status_with_proof(&mut send, &"00".repeat(32)).await,
        StatusCode::UNAUTHORIZED
    );
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("a connection with a wrong proof was closed")
        .unwrap();
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_and_members_still_get_through_after() {
    let limits = LinkLimits {
        max_connections: 3,
        handshake_timeout: Duration::from_secs(2),
        ..LinkLimits::default()
    };
    let (addr, calls) = worker(secret(1), limits).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    // The listener has taken the three; give it the fourth and see it closed unread.
    let mut extra = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(DEADLINE, extra.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0) | Err(_))), "{read:?}");
    // Once the silent ones time out, a member is served.
    let client = LinkClient::new(secret(1)).unwrap();
    let served = tokio::time::timeout(DEADLINE, async {
        loop {
            match client.request(addr, post_to("/count", Body::empty())).await {
                Ok(response) if response.status() == StatusCode::OK => break,
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
    .await;
    assert!(
        served.is_ok(),
        "a member was never served after the cap freed"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
