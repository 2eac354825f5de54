//! OAUTHBEARER (RFC 7628): the client's first message carries the token,
//! `n,,\x01auth=Bearer <token>\x01[key=value\x01...]\x01`. A broker that refuses the token
//! answers with a JSON error challenge; the client then sends a lone `\x01` and the broker
//! fails the exchange (RFC 7628 §3.2.3), which we report with the broker's JSON.

use super::config::OAuthBearerToken;
use super::error::SaslError;
use super::secret::SecretBytes;

const SEPARATOR: char = '\x01';

/// The client's first message for `token`.
pub(crate) fn first_message(token: &OAuthBearerToken) -> Result<SecretBytes, SaslError> {
    let value = token.value.expose();
    if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c == SEPARATOR) {
        return Err(SaslError::TokenProvider(
            "the token is empty or contains whitespace".into(),
        ));
    }
    let mut message = format!("n,,{SEPARATOR}auth=Bearer {value}");
    for (key, extension) in &token.extensions {
        let key_ok =
            !key.is_empty() && key.chars().all(|c| c.is_ascii_alphabetic()) && key != "auth";
        let value_ok = extension
            .chars()
            .all(|c| matches!(c, '\x21'..='\x7E' | ' ' | '\t' | '\r' | '\n'));
        if !key_ok || !value_ok {
            return Err(SaslError::TokenProvider(format!(
                "invalid SASL extension `{key}`"
            )));
        }
        message.push(SEPARATOR);
        message.push_str(key);
        message.push('=');
        message.push_str(extension);
    }
    message.push(SEPARATOR);
    message.push(SEPARATOR);
    Ok(SecretBytes(message.into_bytes()))
}

/// The lone separator a client sends after an error challenge.
pub(crate) fn error_acknowledgement() -> SecretBytes {
    SecretBytes(vec![SEPARATOR as u8])
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::wire::sasl::Secret;

    fn token(extensions: &[(&str, &str)]) -> OAuthBearerToken {
        OAuthBearerToken {
            value: Secret::new("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9."),
            lifetime_ms: 0,
            principal: "alice".into(),
            extensions: extensions
                .iter()
                .map(|&(k, v)| (k.to_owned(), v.to_owned()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn the_first_message_follows_rfc_7628() {
        let m = first_message(&token(&[])).expect("valid");
        assert_eq!(
            m.0,
            b"n,,\x01auth=Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.\x01\x01"
        );
        let m = first_message(&token(&[("logicalCluster", "lkc-1"), ("a", "b")])).expect("ok");
        assert_eq!(
            m.0,
            b"n,,\x01auth=Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.\x01a=b\x01logicalCluster=lkc-1\x01\x01"
        );
        assert!(first_message(&token(&[("auth", "x")])).is_err());
        assert!(first_message(&token(&[("bad key", "x")])).is_err());
        let debug = format!("{:?} {m:?}", token(&[]));
        assert!(!debug.contains("eyJ"), "{debug}");
    }
}
