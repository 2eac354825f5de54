//! PLAIN (RFC 4616): one message, `authzid NUL authcid NUL passwd`, with an empty authzid.

use super::error::SaslError;
use super::secret::{Secret, SecretBytes};

/// The PLAIN message for `username` and `password`.
pub(crate) fn message(username: &str, password: &Secret) -> Result<SecretBytes, SaslError> {
    if username.contains('\0') || password.expose().contains('\0') {
        return Err(SaslError::InvalidCredentials(
            "PLAIN username and password cannot contain NUL".into(),
        ));
    }
    let mut bytes = Vec::with_capacity(username.len() + password.expose().len() + 2);
    bytes.push(0);
    bytes.extend_from_slice(username.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(password.expose().as_bytes());
    Ok(SecretBytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_is_nul_username_nul_password() {
        let m = message("alice", &Secret::new("s3cret")).expect("valid");
        assert_eq!(m.0, b"\0alice\0s3cret");
        assert!(message("a\0b", &Secret::new("x")).is_err());
    }
}
