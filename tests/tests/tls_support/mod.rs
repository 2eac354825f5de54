//! TLS for the adapter tests: certificates made in the test with rcgen ([`Authority`],
//! [`Identity`]), and [`TlsProxy`], a TLS-terminating proxy (tokio-rustls' acceptor on its own
//! tokio runtime) in front of each broker of a [`SimServer`], so the engine speaks TLS to the
//! proxy and the proxy forwards the plaintext bytes to the simulated broker.
//!
//! The simulated brokers advertise `sim-<id>:<port>`: certificates name `sim-0`, `sim-1`,
//! `sim-2` (and `localhost`, `127.0.0.1`), and [`TlsProxy::configure`] maps the advertised
//! addresses to the proxy's loopback ports. The client verifies the advertised name, as Kafka
//! clients do, whatever address it dials.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kstreams_io_common::{
    KafkaStreams, Runtime, Stores, StreamsConfig, StreamsError, StreamsState, TlsConfig,
    TlsErrorKind,
};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::adapter_support::{self, SimServer};

/// The names the brokers' certificates carry.
pub const BROKER_NAMES: [&str; 5] = ["sim-0", "sim-1", "sim-2", "localhost", "127.0.0.1"];

/// How long a handshake failure may take to stop the instance.
pub const FAILS_WITHIN: Duration = Duration::from_secs(5);

/// A certificate authority.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

/// A certificate (PEM) and its private key (PKCS#8 PEM).
#[derive(Clone)]
pub struct Identity {
    pub certificate: String,
    pub key: String,
}

/// When a certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// From 2020 to 2100.
    Now,
    /// From 2019 to 2020.
    Expired,
    /// From 2090 to 2100.
    NotYetValid,
}

impl Authority {
    /// A fresh self-signed CA called `name`.
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let pem = params.self_signed(&key).expect("CA certificate").pem();
        Self {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A server certificate for `names`.
    pub fn server(&self, names: &[&str], validity: Validity) -> Identity {
        self.issue(names, validity, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate for `name`.
    pub fn client(&self, name: &str) -> Identity {
        self.issue(&[name], Validity::Now, ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(
        &self,
        names: &[&str],
        validity: Validity,
        usage: ExtendedKeyUsagePurpose,
    ) -> Identity {
        let key = KeyPair::generate().expect("key");
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("params");
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.extended_key_usages = vec![usage];
        let (from, to) = match validity {
            Validity::Now => (2020, 2100),
            Validity::Expired => (2019, 2020),
            Validity::NotYetValid => (2090, 2100),
        };
        params.not_before = rcgen::date_time_ymd(from, 1, 1);
        params.not_after = rcgen::date_time_ymd(to, 1, 1);
        let certificate = params.signed_by(&key, &self.issuer).expect("certificate");
        Identity {
            certificate: certificate.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// Writes `text` to `dir/name`; returns the path.
pub fn write_pem(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write PEM");
    path
}

/// A TLS-terminating proxy in front of every broker of a [`SimServer`]. Stops on drop.
pub struct TlsProxy {
    runtime: Option<tokio::runtime::Runtime>,
    /// Advertised `host:port` → the proxy's loopback port.
    routes: Vec<(String, u16)>,
    /// Handshakes the proxy refused, with rustls' reason.
    refused: Arc<Mutex<Vec<String>>>,
    /// Handshakes the proxy completed.
    handshakes: Arc<AtomicUsize>,
    /// Connections the proxy turned away (see [`TlsProxy::start_refusing`]).
    turned_away: Arc<AtomicUsize>,
}

impl TlsProxy {
    /// Serves TLS with `identity` in front of each broker of `server`; with `client_ca`,
    /// requires a client certificate signed by it.
    pub fn start(server: &SimServer, identity: &Identity, client_ca: Option<&Authority>) -> Self {
        Self::start_refusing(server, identity, client_ca, 0, Refusal::Close)
    }

    /// [`TlsProxy::start`], but the first `refuse_first` TCP connections (over every broker)
    /// are turned away as `how` says.
    pub fn start_refusing(
        server: &SimServer,
        identity: &Identity,
        client_ca: Option<&Authority>,
        refuse_first: usize,
        how: Refusal,
    ) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("protocol versions");
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots
                    .add(CertificateDer::from_pem_slice(ca.pem().as_bytes()).expect("CA PEM"))
                    .expect("client CA");
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .expect("client verifier");
                builder.with_client_cert_verifier(verifier)
            }
        };
        let chain = CertificateDer::pem_slice_iter(identity.certificate.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("certificate PEM");
        let key = PrivateKeyDer::from_pem_slice(identity.key.as_bytes()).expect("key PEM");
        let config = builder.with_single_cert(chain, key).expect("server config");
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("tls-proxy")
            .enable_all()
            .build()
            .expect("proxy runtime");
        let refused = Arc::new(Mutex::new(Vec::new()));
        let handshakes = Arc::new(AtomicUsize::new(0));
        let turned_away = Arc::new(AtomicUsize::new(0));
        let turning_away = TurningAway {
            first: refuse_first,
            how,
            accepted: Arc::new(AtomicUsize::new(0)),
            turned_away: turned_away.clone(),
        };
        let mut routes = Vec::new();
        for (advertised, backend) in server.listeners() {
            // Bound here, not in `runtime.block_on`: the caller may be on a tokio runtime.
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
            listener.set_nonblocking(true).expect("nonblocking proxy");
            let port = listener.local_addr().expect("proxy addr").port();
            runtime.spawn(accept_loop(
                listener,
                acceptor.clone(),
                backend,
                refused.clone(),
                handshakes.clone(),
                turning_away.clone(),
            ));
            routes.push((advertised, port));
        }
        Self {
            runtime: Some(runtime),
            routes,
            refused,
            handshakes,
            turned_away,
        }
    }

    /// Dials the proxy for every advertised broker address.
    pub fn configure(&self, mut config: StreamsConfig) -> StreamsConfig {
        for (advertised, port) in &self.routes {
            config = config.map_broker_address(advertised.clone(), format!("127.0.0.1:{port}"));
        }
        config
    }

    /// The handshakes the proxy refused so far, with rustls' reason.
    pub fn refused(&self) -> Vec<String> {
        self.refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The handshakes the proxy completed so far.
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::Acquire)
    }

    /// The connections the proxy turned away so far (see [`TlsProxy::start_refusing`]).
    pub fn turned_away(&self) -> usize {
        self.turned_away.load(Ordering::Acquire)
    }
}

/// How [`TlsProxy::start_refusing`] turns a connection away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Accepts and closes at once, without a byte: a proxy or load balancer with no broker
    /// behind it (docker-proxy, `kubectl port-forward`), a broker over its connection quota.
    Close,
    /// Reads the client's hello, answers with a fatal `internal_error` alert and closes: a
    /// broker (or middlebox) failing mid-handshake.
    InternalError,
}

/// A fatal `internal_error` alert record (TLS 1.2 record version): content type 21 (alert),
/// version 3.3, length 2, level 2 (fatal), description 80 (internal_error).
const INTERNAL_ERROR_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x50];

/// Which accepted connections the proxy turns away: the first `first` of all.
#[derive(Clone)]
struct TurningAway {
    first: usize,
    how: Refusal,
    /// Connections accepted so far, over every listener.
    accepted: Arc<AtomicUsize>,
    /// Connections turned away so far.
    turned_away: Arc<AtomicUsize>,
}

impl TurningAway {
    /// Counts an accepted connection; how to turn it away, if it is to be.
    fn next(&self) -> Option<Refusal> {
        if self.accepted.fetch_add(1, Ordering::AcqRel) >= self.first {
            return None;
        }
        self.turned_away.fetch_add(1, Ordering::AcqRel);
        Some(self.how)
    }
}

/// Turns `tcp` away as `how` says.
async fn turn_away(mut tcp: TcpStream, how: Refusal) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    match how {
        Refusal::Close => drop(tcp),
        Refusal::InternalError => {
            let mut hello = [0u8; 512];
            let _ = tcp.read(&mut hello).await;
            let _ = tcp.write_all(&INTERNAL_ERROR_ALERT).await;
            let _ = tcp.shutdown().await;
        }
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn accept_loop(
    listener: std::net::TcpListener,
    acceptor: TlsAcceptor,
    backend: u16,
    refused: Arc<Mutex<Vec<String>>>,
    handshakes: Arc<AtomicUsize>,
    turning_away: TurningAway,
) {
    let listener = TcpListener::from_std(listener).expect("proxy listener");
    while let Ok((tcp, _)) = listener.accept().await {
        if let Some(how) = turning_away.next() {
            tokio::spawn(turn_away(tcp, how));
            continue;
        }
        let acceptor = acceptor.clone();
        let refused = refused.clone();
        let handshakes = handshakes.clone();
        tokio::spawn(async move {
            let mut tls = match acceptor.accept(tcp).await {
                Ok(tls) => {
                    handshakes.fetch_add(1, Ordering::AcqRel);
                    tls
                }
                Err(error) => {
                    refused
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(error.to_string());
                    return;
                }
            };
            let Ok(mut plain) = TcpStream::connect(("127.0.0.1", backend)).await else {
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
        });
    }
}

/// The adapter test settings of `adapter_support` with `tls`, dialling `proxy` (or, without
/// one, the simulated brokers' plaintext listeners).
pub fn tls_config(
    server: &SimServer,
    proxy: Option<&TlsProxy>,
    app: &str,
    tls: TlsConfig,
) -> StreamsConfig {
    let config = adapter_support::streams_config(server, app, 1).with_tls(tls);
    match proxy {
        Some(proxy) => proxy.configure(config),
        None => config,
    }
}

/// The count topology over TLS (with a client certificate when `mutual`), one stream thread:
/// the exact output, every offset committed, a clean close that leaves the group.
pub async fn count_over_tls<R: Runtime>(seed: u64, app: &str, mutual: bool) {
    count_through_refusals::<R>(seed, app, mutual, 0, Refusal::Close).await;
}

/// [`count_over_tls`] through a proxy that turns its first `refuse_first` connections away
/// ([`TlsProxy::start_refusing`]): with [`Refusal::Close`] (a TLS broker restarting behind
/// docker-proxy, `kubectl port-forward` or a load balancer) each closed handshake is a
/// disconnect (the plaintext-listener probe gets no answer either), never `NotTls`; with
/// [`Refusal::InternalError`] the alert is a disconnect, not a fatal TLS error. Either way
/// the engine retries on its backoff and, once the proxy serves TLS, the count is exact.
pub async fn count_through_refusals<R: Runtime>(
    seed: u64,
    app: &str,
    mutual: bool,
    refuse_first: usize,
    how: Refusal,
) {
    let ca = Authority::new("kstreams test CA");
    let dir = tempfile::tempdir().expect("temp dir");
    let (sim, expected) = adapter_support::cluster_with_input(seed);
    let server = SimServer::start(sim);
    let broker = ca.server(&BROKER_NAMES, Validity::Now);
    let mut tls = TlsConfig::new().with_ca_file(write_pem(dir.path(), "ca.pem", ca.pem()));
    let client_ca = Authority::new("kstreams client CA");
    if mutual {
        let client = client_ca.client("kstreams-client");
        tls = tls.with_client_certificate(
            write_pem(dir.path(), "client.pem", &client.certificate),
            write_pem(dir.path(), "client.key", &client.key),
        );
    }
    let proxy = TlsProxy::start_refusing(
        &server,
        &broker,
        mutual.then_some(&client_ca),
        refuse_first,
        how,
    );
    let started = Instant::now();
    let streams = KafkaStreams::<R>::new(
        adapter_support::count_topology(),
        tls_config(&server, Some(&proxy), app, tls),
        Stores::Memory,
    )
    .expect("instance");
    let handle = streams.start().expect("start");
    assert_eq!(
        handle.wait_for_state(|s| s == StreamsState::Running).await,
        StreamsState::Running
    );
    adapter_support::eventually("every input offset committed", || {
        adapter_support::all_committed(&server, app)
    });
    adapter_support::assert_exact_output(&server, &expected);
    handle.close().await.expect("clean close");
    assert_eq!(handle.state(), StreamsState::NotRunning);
    assert!(adapter_support::group_is_empty(&server, app));
    assert_eq!(proxy.refused(), Vec::<String>::new());
    assert_eq!(proxy.turned_away(), refuse_first);
    if refuse_first > 0 {
        eprintln!(
            "{how:?} x{refuse_first}: counted exactly after {:?}",
            started.elapsed()
        );
    }
    // Bootstrap, group coordinator and partition leaders: every connection was TLS.
    assert!(proxy.handshakes() >= 2, "{} handshakes", proxy.handshakes());
}

/// A misconfiguration that makes every handshake fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misconfiguration {
    /// The broker's certificate is signed by a CA the client does not trust.
    UntrustedCa,
    /// The broker's certificate names another host.
    NameMismatch,
    /// The broker's certificate has expired.
    Expired,
    /// The broker's certificate is not valid yet.
    NotYetValid,
    /// The client dials the broker's plaintext listener.
    PlaintextListener,
    /// The broker requires a client certificate; the client has none.
    NoClientCertificate,
    /// The broker requires a client certificate signed by a CA other than the client's.
    UntrustedClientCertificate,
}

impl Misconfiguration {
    /// The error kind it must give.
    pub fn kind(self) -> TlsErrorKind {
        match self {
            Self::UntrustedCa => TlsErrorKind::UntrustedCertificate,
            Self::NameMismatch => TlsErrorKind::NameMismatch,
            Self::Expired => TlsErrorKind::Expired,
            Self::NotYetValid => TlsErrorKind::NotYetValid,
            Self::PlaintextListener => TlsErrorKind::NotTls,
            Self::NoClientCertificate | Self::UntrustedClientCertificate => {
                TlsErrorKind::ClientCertificateRefused
            }
        }
    }
}

/// Runs the count topology against a broker set up with `case`: the instance ends in
/// `Error` with `StreamsError::Tls` of the case's kind, naming the advertised bootstrap
/// broker, within [`FAILS_WITHIN`].
pub async fn misconfigured<R: Runtime>(case: Misconfiguration, app: &str) {
    let ca = Authority::new("kstreams test CA");
    let dir = tempfile::tempdir().expect("temp dir");
    let (sim, _) = adapter_support::cluster_with_input(7);
    let server = SimServer::start(sim);
    let tls = TlsConfig::new().with_ca_file(write_pem(dir.path(), "ca.pem", ca.pem()));
    let client_ca = Authority::new("kstreams client CA");
    let (proxy, tls) = match case {
        Misconfiguration::UntrustedCa => {
            let other = Authority::new("someone else's CA");
            let broker = other.server(&BROKER_NAMES, Validity::Now);
            (Some(TlsProxy::start(&server, &broker, None)), tls)
        }
        Misconfiguration::NameMismatch => {
            let broker = ca.server(&["elsewhere.example"], Validity::Now);
            (Some(TlsProxy::start(&server, &broker, None)), tls)
        }
        Misconfiguration::Expired => {
            let broker = ca.server(&BROKER_NAMES, Validity::Expired);
            (Some(TlsProxy::start(&server, &broker, None)), tls)
        }
        Misconfiguration::NotYetValid => {
            let broker = ca.server(&BROKER_NAMES, Validity::NotYetValid);
            (Some(TlsProxy::start(&server, &broker, None)), tls)
        }
        Misconfiguration::PlaintextListener => (None, tls),
        Misconfiguration::NoClientCertificate => {
            let broker = ca.server(&BROKER_NAMES, Validity::Now);
            let proxy = TlsProxy::start(&server, &broker, Some(&client_ca));
            (Some(proxy), tls)
        }
        Misconfiguration::UntrustedClientCertificate => {
            let broker = ca.server(&BROKER_NAMES, Validity::Now);
            let proxy = TlsProxy::start(&server, &broker, Some(&client_ca));
            let stranger = Authority::new("not the broker's client CA").client("intruder");
            let tls = tls.with_client_certificate_pem(stranger.certificate, stranger.key);
            (Some(proxy), tls)
        }
    };
    let streams = KafkaStreams::<R>::new(
        adapter_support::count_topology(),
        tls_config(&server, proxy.as_ref(), app, tls),
        Stores::Memory,
    )
    .expect("instance");
    let started = Instant::now();
    let handle = streams.start().expect("start");
    let error = handle
        .wait()
        .await
        .expect_err("a TLS failure stops the instance");
    let took = started.elapsed();
    match &error {
        StreamsError::Tls {
            broker,
            kind,
            detail,
            ..
        } => {
            assert_eq!(*kind, case.kind(), "{case:?}: {error}");
            if case == Misconfiguration::PlaintextListener {
                assert!(detail.contains("speaks plaintext Kafka"), "{error}");
            }
            assert_eq!(broker, "sim-0:9092", "{case:?}: names the bootstrap broker");
        }
        other => panic!("{case:?}: not a TLS error: {other}"),
    }
    assert!(took < FAILS_WITHIN, "{case:?}: took {took:?}: {error}");
    assert_eq!(handle.state(), StreamsState::Error);
    eprintln!("{case:?}: {took:?}: {error}");
}

/// A CA file that does not exist fails `KafkaStreams::new` with an error naming it.
pub fn missing_ca_file<R: Runtime>() {
    let (sim, _) = adapter_support::cluster_with_input(8);
    let server = SimServer::start(sim);
    let config = tls_config(
        &server,
        None,
        "missing-ca",
        TlsConfig::new().with_ca_file("/nonexistent/kstreams/ca.pem"),
    );
    let Err(error) =
        KafkaStreams::<R>::new(adapter_support::count_topology(), config, Stores::Memory)
    else {
        panic!("a missing CA file is refused when the instance is built");
    };
    assert!(matches!(error, StreamsError::TlsConfig(_)), "{error}");
    assert!(
        error.to_string().contains("/nonexistent/kstreams/ca.pem"),
        "{error}"
    );
}
