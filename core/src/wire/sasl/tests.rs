//! The exchange over SaslHandshake/SaslAuthenticate values: error mapping, OAUTHBEARER's
//! error challenge, mechanism names and redaction.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::{SaslAuthenticateResponse, SaslHandshakeResponse};
use kafka_protocol::protocol::StrBytes;

use super::exchange::{Authenticator, Next};
use super::*;

fn handshake_ok() -> SaslHandshakeResponse {
    SaslHandshakeResponse::default()
}

fn authenticate(code: i16, message: Option<&str>, bytes: &[u8]) -> SaslAuthenticateResponse {
    SaslAuthenticateResponse::default()
        .with_error_code(code)
        .with_error_message(message.map(|m| StrBytes::from_string(m.to_owned())))
        .with_auth_bytes(Bytes::copy_from_slice(bytes))
        .with_session_lifetime_ms(60_000)
}

#[test]
fn mechanisms_parse_and_print_their_kafka_names() {
    for name in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] {
        let mechanism: SaslMechanism = name.parse().expect(name);
        assert_eq!(mechanism.to_string(), name);
    }
    assert_eq!("scram-sha-512".parse(), Ok(SaslMechanism::ScramSha512));
    assert!("GSSAPI".parse::<SaslMechanism>().is_err());
    assert_eq!(
        SaslConfig::scram_sha256("u", "p").mechanism(),
        SaslMechanism::ScramSha256
    );
    assert!(SaslConfig::with_password(SaslMechanism::OAuthBearer, "u", "p").is_none());
}

#[test]
fn debug_output_never_shows_a_password_or_token() {
    let secret = Secret::new("hunter2");
    assert_eq!(format!("{secret:?}"), "***");
    for config in [
        SaslConfig::plain("alice", "hunter2"),
        SaslConfig::scram_sha512("alice", Secret::new("hunter2")),
    ] {
        let debug = format!("{config:?}");
        assert!(
            debug.contains("alice") && !debug.contains("hunter2"),
            "{debug}"
        );
        // The exchange (nonce, credentials, expected signature) is redacted too.
        let mut exchange = Authenticator::new(&config, "nonce".into());
        let first = exchange.handle_handshake(&handshake_ok()).expect("first");
        assert!(!format!("{exchange:?}").contains("hunter2"));
        if config.mechanism() == SaslMechanism::Plain {
            assert!(first.auth_bytes.ends_with(b"hunter2"), "sent, though");
        }
    }
}

#[test]
fn broker_error_codes_map_to_typed_errors() {
    let mut plain = Authenticator::new(&SaslConfig::plain("u", "p"), String::new());
    let refused = SaslHandshakeResponse::default()
        .with_error_code(33)
        .with_mechanisms(vec![
            StrBytes::from_static_str("SCRAM-SHA-256"),
            StrBytes::from_static_str("SCRAM-SHA-512"),
        ]);
    let error = plain.handle_handshake(&refused).expect_err("refused");
    assert_eq!(
        error,
        SaslError::UnsupportedMechanism {
            enabled: vec!["SCRAM-SHA-256".into(), "SCRAM-SHA-512".into()]
        }
    );
    assert!(error.to_string().contains("SCRAM-SHA-256, SCRAM-SHA-512"));
    plain.handle_handshake(&handshake_ok()).expect("first");
    for (code, expected) in [
        (
            58,
            SaslError::AuthenticationFailed {
                message: "bad password".into(),
            },
        ),
        (
            34,
            SaslError::IllegalState {
                message: "bad password".into(),
            },
        ),
        (
            7,
            SaslError::Broker {
                code: 7,
                message: "bad password".into(),
            },
        ),
    ] {
        let got = plain
            .handle_authenticate(&authenticate(code, Some("bad password"), b""))
            .expect_err("failed");
        assert_eq!(got, expected);
    }
    match plain.handle_authenticate(&authenticate(0, None, b"")) {
        Ok(Next::Done {
            session_lifetime_ms: 60_000,
        }) => {}
        other => panic!("{other:?}"),
    }
}

struct Tokens(Result<OAuthBearerToken, String>);

impl OAuthBearerTokenProvider for Tokens {
    fn token(&self) -> Result<OAuthBearerToken, String> {
        self.0.clone()
    }
}

fn oauth(token: &str) -> SaslConfig {
    SaslConfig::oauthbearer(Arc::new(Tokens(Ok(OAuthBearerToken {
        value: Secret::new(token),
        lifetime_ms: 1,
        principal: "alice".into(),
        extensions: Default::default(),
    }))))
}

#[test]
fn oauthbearer_sends_the_token_and_reports_the_error_challenge() {
    let mut exchange = Authenticator::new(&oauth("tok.en"), String::new());
    let first = exchange.handle_handshake(&handshake_ok()).expect("first");
    assert_eq!(&first.auth_bytes[..], b"n,,\x01auth=Bearer tok.en\x01\x01");
    assert!(matches!(
        exchange.handle_authenticate(&authenticate(0, None, b"")),
        Ok(Next::Done { .. })
    ));

    let mut exchange = Authenticator::new(&oauth("tok.en"), String::new());
    exchange.handle_handshake(&handshake_ok()).expect("first");
    let challenge = br#"{"status":"invalid_token"}"#;
    let Ok(Next::Authenticate(ack)) =
        exchange.handle_authenticate(&authenticate(0, None, challenge))
    else {
        panic!("the error challenge is acknowledged");
    };
    assert_eq!(&ack.auth_bytes[..], b"\x01");
    assert_eq!(
        exchange
            .handle_authenticate(&authenticate(58, Some("x"), b""))
            .expect_err("refused"),
        SaslError::TokenRefused(r#"{"status":"invalid_token"}"#.into())
    );

    let failing = SaslConfig::oauthbearer(Arc::new(Tokens(Err("no token yet".into()))));
    let mut exchange = Authenticator::new(&failing, String::new());
    assert_eq!(
        exchange
            .handle_handshake(&handshake_ok())
            .expect_err("no token"),
        SaslError::TokenProvider("no token yet".into())
    );
}

#[test]
fn scram_over_the_exchange_needs_the_server_signature() {
    let mut exchange = Authenticator::new(
        &SaslConfig::scram_sha256("user", "pencil"),
        "rOprNGfwEbeRWgbNEkqO".into(),
    );
    let first = exchange.handle_handshake(&handshake_ok()).expect("first");
    assert_eq!(&first.auth_bytes[..], b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
    let server_first =
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    assert!(matches!(
        exchange.handle_authenticate(&authenticate(0, None, server_first)),
        Ok(Next::Authenticate(_))
    ));
    assert_eq!(
        exchange
            .handle_authenticate(&authenticate(0, None, b"v=AAAA"))
            .expect_err("bad signature"),
        SaslError::BadServerSignature
    );
}

#[test]
fn salted_passwords_are_what_brokers_store() {
    let salted = scram_salted_password(
        SaslMechanism::ScramSha256,
        &Secret::new("pencil"),
        &[
            0x5b, 0x6d, 0x99, 0x68, 0x9d, 0x12, 0x35, 0x8e, 0xec, 0xa0, 0x4b, 0x14, 0x12, 0x36,
            0xfa, 0x81,
        ],
        4096,
    )
    .expect("SCRAM");
    assert_eq!(salted.len(), 32);
    assert!(scram_salted_password(SaslMechanism::Plain, &Secret::new("p"), b"s", 4096).is_none());
}
