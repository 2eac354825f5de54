//! SCRAM-SHA-256 and SCRAM-SHA-512 clients (RFC 5802, RFC 7677), without channel binding
//! (GS2 header `n,,`).
//!
//! Three messages: client-first (`n,,n=<user>,r=<client nonce>`), the server's first
//! (`r=<nonce>,s=<salt>,i=<iterations>`) answered by client-final
//! (`c=biws,r=<nonce>,p=<proof>`), and the server's final (`v=<signature>`), which is checked:
//! a broker that does not know the password's verifier cannot produce it. Username and
//! password are used as their UTF-8 bytes, as Kafka's Java client and librdkafka use them
//! (no saslprep, RFC 4013: a broker's stored credentials come from the same raw bytes, so a
//! password that saslprep would change, e.g. with a no-break space, must stay as it is);
//! `=` and `,` in the username are escaped as `=3D` and `=2C`. The crypto is the `hmac`, `sha2` and `pbkdf2` crates'.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

use super::error::SaslError;
use super::secret::{Secret, SecretBytes};

/// Fewest iterations accepted from a server (Kafka's minimum for both mechanisms; RFC 7677
/// asks for at least 4096).
const MIN_ITERATIONS: u32 = 4096;
/// Most iterations accepted: a hostile server must not stall the engine's thread for long.
const MAX_ITERATIONS: u32 = 1 << 20;

/// The hash of a SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScramHash {
    Sha256,
    Sha512,
}

impl ScramHash {
    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => {
                let mut mac =
                    Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
            Self::Sha512 => {
                let mut mac =
                    Hmac::<Sha512>::new_from_slice(key).expect("HMAC takes keys of any length");
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(data).to_vec(),
            Self::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// Hi(password, salt, iterations): PBKDF2 with this hash's HMAC.
    fn hi(self, password: &[u8], salt: &[u8], iterations: u32) -> SecretBytes {
        match self {
            Self::Sha256 => SecretBytes(
                pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password, salt, iterations).to_vec(),
            ),
            Self::Sha512 => SecretBytes(
                pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(password, salt, iterations).to_vec(),
            ),
        }
    }
}

/// The salted password a broker stores for `password` (what AlterUserScramCredentials takes):
/// Hi(password, salt, iterations) over the password's UTF-8 bytes.
pub(crate) fn salted_password(
    hash: ScramHash,
    password: &Secret,
    salt: &[u8],
    iterations: u32,
) -> Vec<u8> {
    hash.hi(password.expose().as_bytes(), salt, iterations).0
}

/// Where the exchange is.
#[derive(Debug)]
enum Step {
    /// client-first was not built yet.
    Start,
    /// client-first sent; waiting for server-first.
    SentFirst { client_first_bare: String },
    /// client-final sent; waiting for server-final, to check against this signature.
    SentFinal { server_signature: SecretBytes },
    /// Verified.
    Done,
}

/// One SCRAM exchange.
#[derive(Debug)]
pub(crate) struct ScramClient {
    hash: ScramHash,
    username: String,
    password: Secret,
    nonce: String,
    step: Step,
}

impl ScramClient {
    pub(crate) fn new(hash: ScramHash, username: &str, password: Secret, nonce: String) -> Self {
        Self {
            hash,
            username: username.to_owned(),
            password,
            nonce,
            step: Step::Start,
        }
    }

    /// client-first.
    pub(crate) fn first_message(&mut self) -> Result<Vec<u8>, SaslError> {
        let name = self.username.replace('=', "=3D").replace(',', "=2C");
        let client_first_bare = format!("n={name},r={}", self.nonce);
        let message = format!("n,,{client_first_bare}");
        self.step = Step::SentFirst { client_first_bare };
        Ok(message.into_bytes())
    }

    /// Answers server-first with client-final (`Some`), or checks server-final (`None`).
    pub(crate) fn handle(&mut self, message: &[u8]) -> Result<Option<SecretBytes>, SaslError> {
        let message = std::str::from_utf8(message)
            .map_err(|_| SaslError::Malformed("SCRAM server message is not UTF-8".into()))?;
        match std::mem::replace(&mut self.step, Step::Done) {
            Step::SentFirst { client_first_bare } => {
                self.client_final(&client_first_bare, message).map(Some)
            }
            Step::SentFinal { server_signature } => {
                verify_server_final(message, &server_signature)?;
                Ok(None)
            }
            Step::Start | Step::Done => Err(SaslError::Malformed(
                "SCRAM server message after the exchange ended".into(),
            )),
        }
    }

    fn client_final(
        &mut self,
        client_first_bare: &str,
        server_first: &str,
    ) -> Result<SecretBytes, SaslError> {
        let first = parse_server_first(server_first)?;
        if !first.nonce.starts_with(&self.nonce) || first.nonce.len() == self.nonce.len() {
            return Err(SaslError::Malformed(
                "server nonce does not extend the client nonce".into(),
            ));
        }
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&first.iterations) {
            return Err(SaslError::Malformed(format!(
                "{} iterations outside {MIN_ITERATIONS}..={MAX_ITERATIONS}",
                first.iterations
            )));
        }
        let salted = self.hash.hi(
            self.password.expose().as_bytes(),
            &first.salt,
            first.iterations,
        );
        let client_key = self.hash.hmac(&salted.0, b"Client Key");
        let stored_key = self.hash.hash(&client_key);
        // "biws" is base64("n,,"): no channel binding.
        let without_proof = format!("c=biws,r={}", first.nonce);
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let client_signature = self.hash.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&client_signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = self.hash.hmac(&salted.0, b"Server Key");
        let server_signature = self.hash.hmac(&server_key, auth_message.as_bytes());
        self.step = Step::SentFinal {
            server_signature: SecretBytes(server_signature),
        };
        Ok(SecretBytes(
            format!("{without_proof},p={}", STANDARD.encode(proof)).into_bytes(),
        ))
    }
}

struct ServerFirst {
    nonce: String,
    salt: Vec<u8>,
    iterations: u32,
}

fn parse_server_first(message: &str) -> Result<ServerFirst, SaslError> {
    let malformed = |what: &str| SaslError::Malformed(format!("SCRAM server-first: {what}"));
    if let Some(error) = message.strip_prefix("e=") {
        return Err(SaslError::ServerError(error.to_owned()));
    }
    if message.starts_with("m=") {
        return Err(malformed("mandatory extension not supported"));
    }
    let mut parts = message.split(',');
    let nonce = parts
        .next()
        .and_then(|p| p.strip_prefix("r="))
        .ok_or_else(|| malformed("no nonce"))?;
    let salt = parts
        .next()
        .and_then(|p| p.strip_prefix("s="))
        .ok_or_else(|| malformed("no salt"))?;
    let iterations = parts
        .next()
        .and_then(|p| p.strip_prefix("i="))
        .ok_or_else(|| malformed("no iteration count"))?;
    Ok(ServerFirst {
        nonce: nonce.to_owned(),
        salt: STANDARD
            .decode(salt)
            .map_err(|_| malformed("salt is not base64"))?,
        iterations: iterations
            .parse()
            .map_err(|_| malformed("iteration count is not a number"))?,
    })
}

fn verify_server_final(message: &str, expected: &SecretBytes) -> Result<(), SaslError> {
    if let Some(error) = message.strip_prefix("e=") {
        return Err(SaslError::ServerError(error.to_owned()));
    }
    let signature = message
        .split(',')
        .next()
        .and_then(|p| p.strip_prefix("v="))
        .ok_or_else(|| SaslError::Malformed("SCRAM server-final: no verifier".into()))?;
    let signature = STANDARD
        .decode(signature)
        .map_err(|_| SaslError::Malformed("SCRAM server-final: verifier is not base64".into()))?;
    // Constant time, as a MAC check should be.
    let same = signature.len() == expected.0.len()
        && signature
            .iter()
            .zip(&expected.0)
            .fold(0_u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(SaslError::BadServerSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 §3: user "user", password "pencil".
    const SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";

    #[test]
    fn sha256_matches_the_rfc_7677_example() {
        let mut client = ScramClient::new(
            ScramHash::Sha256,
            "user",
            Secret::new("pencil"),
            "rOprNGfwEbeRWgbNEkqO".into(),
        );
        assert_eq!(
            client.first_message().expect("first"),
            b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
        );
        let last = client
            .handle(SERVER_FIRST.as_bytes())
            .expect("server-first accepted")
            .expect("client-final");
        assert_eq!(
            String::from_utf8(last.0).expect("utf-8"),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert_eq!(
            client
                .handle(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
                .expect("signature verified"),
            None
        );
    }

    #[test]
    fn a_wrong_server_signature_is_refused() {
        let mut client = ScramClient::new(
            ScramHash::Sha256,
            "user",
            Secret::new("pencil"),
            "rOprNGfwEbeRWgbNEkqO".into(),
        );
        client.first_message().expect("first");
        client
            .handle(SERVER_FIRST.as_bytes())
            .expect("client-final");
        assert_eq!(
            client.handle(b"v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
            Err(SaslError::BadServerSignature)
        );
    }

    /// A SHA-512 server, written from RFC 5802 §3 independently of the client's code path.
    #[test]
    fn sha512_round_trip_with_a_server_side_check() {
        let password = Secret::new("pässwörd\u{00A0}x");
        let salt = b"0123456789abcdef";
        let mut client = ScramClient::new(
            ScramHash::Sha512,
            "us=er,1",
            password.clone(),
            "clientnonce".into(),
        );
        let first = String::from_utf8(client.first_message().expect("first")).expect("utf-8");
        assert_eq!(first, "n,,n=us=3Der=2C1,r=clientnonce");
        let server_first = format!("r=clientnonceSERVER,s={},i=4096", STANDARD.encode(salt));
        let last = client
            .handle(server_first.as_bytes())
            .expect("accepted")
            .expect("client-final");
        let last = String::from_utf8(last.0).expect("utf-8");
        let (without_proof, proof) = last.split_once(",p=").expect("proof");
        // Server side: what the broker stores, Hi over the password's raw UTF-8 bytes (the
        // no-break space stays: Kafka's clients do not saslprep).
        let salted =
            pbkdf2::pbkdf2_hmac_array::<Sha512, 64>("pässwörd\u{00A0}x".as_bytes(), salt, 4096)
                .to_vec();
        let h = ScramHash::Sha512;
        let stored_key = h.hash(&h.hmac(&salted, b"Client Key"));
        let auth_message = format!("{},{server_first},{without_proof}", &first[3..]);
        let signature = h.hmac(&stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = STANDARD
            .decode(proof)
            .expect("base64")
            .iter()
            .zip(&signature)
            .map(|(p, s)| p ^ s)
            .collect();
        assert_eq!(h.hash(&client_key), stored_key, "the proof verifies");
        let server_signature = h.hmac(&h.hmac(&salted, b"Server Key"), auth_message.as_bytes());
        let server_final = format!("v={}", STANDARD.encode(server_signature));
        assert_eq!(client.handle(server_final.as_bytes()), Ok(None));
    }

    #[test]
    fn bad_server_first_messages_are_refused() {
        for (message, expected) in [
            (
                "e=unknown-user",
                "SCRAM error from the broker: unknown-user",
            ),
            ("r=other,s=AAAA,i=4096", "does not extend"),
            ("r=nonceX,s=AAAA,i=10", "iterations"),
            ("r=nonceX,s=***,i=4096", "base64"),
            ("m=x,r=nonceX", "mandatory"),
        ] {
            let mut client =
                ScramClient::new(ScramHash::Sha256, "u", Secret::new("p"), "nonce".into());
            client.first_message().expect("first");
            let error = client.handle(message.as_bytes()).expect_err(message);
            assert!(error.to_string().contains(expected), "{message}: {error}");
        }
    }

    #[test]
    fn debug_output_hides_the_password_and_the_expected_signature() {
        let mut client =
            ScramClient::new(ScramHash::Sha256, "user", Secret::new("pencil"), "n".into());
        client.first_message().expect("first");
        let debug = format!("{client:?}");
        assert!(!debug.contains("pencil"), "{debug}");
        client
            .handle(b"r=nX,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
            .expect("final");
        let debug = format!("{client:?}");
        assert!(
            debug.contains("***") && !debug.contains("pencil"),
            "{debug}"
        );
    }
}
