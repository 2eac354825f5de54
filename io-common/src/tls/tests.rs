//! Building the rustls configuration: what is accepted, and the error (naming the file) for
//! each unusable input.

use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

use super::*;

/// A CA certificate and its key, as PEM.
fn ca() -> (String, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let certificate = params.self_signed(&key).unwrap();
    (certificate.pem(), key)
}

/// A client certificate signed by a fresh CA, and its key, as PEM.
fn client() -> (String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["client".to_owned()]).unwrap();
    let certificate = params.signed_by(&key, &issuer).unwrap();
    (certificate.pem(), key.serialize_pem())
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_ca_file_and_a_client_certificate_build_a_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, _) = ca();
    let (certificate, key) = client();
    let config = TlsConfig::new()
        .with_ca_file(write(dir.path(), "ca.pem", &ca))
        .with_client_certificate(
            write(dir.path(), "client.pem", &certificate),
            write(dir.path(), "client.key", &key),
        );
    let built = config.client_config().unwrap();
    assert!(built.client_auth_cert_resolver.has_certs());

    let in_memory = TlsConfig::new()
        .with_ca_pem(ca)
        .with_client_certificate_pem(certificate, key);
    in_memory.client_config().unwrap();
}

#[test]
fn a_missing_file_is_named() {
    let error = TlsConfig::new()
        .with_ca_file("/nonexistent/ca.pem")
        .client_config()
        .unwrap_err();
    assert!(
        matches!(&error, TlsConfigError::Read { path, .. } if path == Path::new("/nonexistent/ca.pem")),
        "{error}"
    );
    assert!(error.to_string().contains("/nonexistent/ca.pem"), "{error}");
}

#[test]
fn a_file_without_a_certificate_or_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let empty = write(dir.path(), "empty.pem", "no PEM here\n");
    let error = TlsConfig::new()
        .with_ca_file(&empty)
        .client_config()
        .unwrap_err();
    assert!(
        matches!(&error, TlsConfigError::NoCertificate { origin: PemSource::File(p) } if *p == empty),
        "{error}"
    );

    let (ca, _) = ca();
    let (certificate, _) = client();
    let error = TlsConfig::new()
        .with_ca_pem(ca.clone())
        .with_client_certificate(write(dir.path(), "client.pem", &certificate), &empty)
        .client_config()
        .unwrap_err();
    assert!(
        matches!(&error, TlsConfigError::NoPrivateKey { origin: PemSource::File(p) } if *p == empty),
        "{error}"
    );

    let broken = write(
        dir.path(),
        "broken.pem",
        "-----BEGIN CERTIFICATE-----\n%%%\n-----END CERTIFICATE-----\n",
    );
    let error = TlsConfig::new()
        .with_ca_file(&broken)
        .client_config()
        .unwrap_err();
    assert!(
        matches!(&error, TlsConfigError::InvalidPem { origin: PemSource::File(p), .. } if *p == broken),
        "{error}"
    );
}

#[test]
fn a_key_that_is_not_the_certificates_is_refused() {
    let (ca, _) = ca();
    let (certificate, _) = client();
    let other_key = KeyPair::generate().unwrap().serialize_pem();
    let error = TlsConfig::new()
        .with_ca_pem(ca)
        .with_client_certificate_pem(certificate, other_key)
        .client_config()
        .unwrap_err();
    assert!(matches!(error, TlsConfigError::ClientKey { .. }), "{error}");
}

#[test]
fn debug_output_never_shows_pem_text() {
    let (ca, _) = ca();
    let (certificate, key) = client();
    let config = TlsConfig::new()
        .with_ca_pem(ca)
        .with_client_certificate_pem(certificate, key.clone());
    let shown = format!("{config:?}");
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    assert!(!shown.contains(&key[40..80]), "{shown}");
    assert!(shown.contains("in-memory PEM"), "{shown}");
    assert_eq!(
        format!("{:?}", TlsConfig::new().with_ca_file("/etc/ca.pem")),
        r#"TlsConfig { roots: "file /etc/ca.pem", client: None }"#
    );
}

/// The system roots load (this machine keeps them in `/etc/ssl/certs`), or, on a machine
/// without any, the error says to give a CA file.
#[test]
fn system_roots_load_or_the_error_says_to_give_a_ca_file() {
    match TlsConfig::new().client_config() {
        Ok(_) => {}
        Err(error @ TlsConfigError::NoSystemRoots { .. }) => {
            assert!(error.to_string().contains("with_ca_file"), "{error}");
        }
        Err(other) => panic!("{other}"),
    }
}
