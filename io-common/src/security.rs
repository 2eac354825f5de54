//! The security properties (`security.protocol`, `sasl.*`, `ssl.*`) of
//! [`StreamsConfig::from_properties`](crate::StreamsConfig::from_properties): collected while
//! the properties are read, then checked together and turned into the configuration's TLS
//! and SASL settings by [`apply`].

use std::path::PathBuf;
use std::str::FromStr;

use kstreams_core::sasl::SaslConfig;

use crate::config::StreamsConfig;
use crate::tls::TlsConfig;

/// Kafka's `security.protocol`: whether connections use TLS and whether they authenticate
/// with SASL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecurityProtocol {
    /// No TLS, no SASL (the default).
    #[default]
    Plaintext,
    /// TLS, no SASL (a client certificate may authenticate).
    Ssl,
    /// SASL over plain TCP.
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// Whether connections use TLS.
    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    /// Whether connections authenticate with SASL.
    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

impl FromStr for SecurityProtocol {
    type Err = String;

    /// Kafka's names, in any case (librdkafka accepts lower case too).
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Ok(Self::Plaintext),
            "SSL" => Ok(Self::Ssl),
            "SASL_PLAINTEXT" => Ok(Self::SaslPlaintext),
            "SASL_SSL" => Ok(Self::SaslSsl),
            _ => Err(format!(
                "`{s}` is not PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
            )),
        }
    }
}

/// The SASL mechanisms a properties file may name (OAUTHBEARER needs a token provider,
/// which only code can give).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PasswordMechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

/// The security properties read so far.
#[derive(Default)]
pub(crate) struct SecuritySettings {
    pub(crate) protocol: Option<SecurityProtocol>,
    pub(crate) mechanism: Option<PasswordMechanism>,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    /// Which login module `sasl.jaas.config` named (to check it against the mechanism).
    pub(crate) jaas_module: Option<JaasModule>,
    pub(crate) ca_location: Option<PathBuf>,
    pub(crate) certificate_location: Option<PathBuf>,
    pub(crate) key_location: Option<PathBuf>,
}

/// The login modules of the Java clients' `sasl.jaas.config` that carry a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JaasModule {
    Plain,
    Scram,
}

impl SecuritySettings {
    /// `sasl.mechanism`.
    pub(crate) fn set_mechanism(&mut self, v: &str) -> Result<(), String> {
        self.mechanism = Some(match v {
            "PLAIN" => PasswordMechanism::Plain,
            "SCRAM-SHA-256" => PasswordMechanism::ScramSha256,
            "SCRAM-SHA-512" => PasswordMechanism::ScramSha512,
            "OAUTHBEARER" => {
                return Err("OAUTHBEARER takes its token from the application: leave \
                            sasl.mechanism out of the properties and set \
                            `config.engine.sasl = Some(SaslConfig::oauthbearer(provider))` \
                            in code"
                    .into());
            }
            "GSSAPI" => return Err("GSSAPI (Kerberos) is not supported".into()),
            other => {
                return Err(format!(
                    "`{other}` is not PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER"
                ));
            }
        });
        Ok(())
    }

    /// `sasl.jaas.config`: `<module> required username="…" password="…";` with the Java
    /// clients' PlainLoginModule or ScramLoginModule. Errors never repeat the value.
    pub(crate) fn set_jaas_config(&mut self, v: &str) -> Result<(), String> {
        let (module, options) = parse_jaas(v)?;
        self.jaas_module = Some(match module.rsplit('.').next().unwrap_or(module) {
            "PlainLoginModule" => JaasModule::Plain,
            "ScramLoginModule" => JaasModule::Scram,
            "OAuthBearerLoginModule" => {
                return Err("OAUTHBEARER takes its token from the application: set \
                            `config.engine.sasl = Some(SaslConfig::oauthbearer(provider))` \
                            in code"
                    .into());
            }
            _ => {
                return Err("the login module is not PlainLoginModule or ScramLoginModule".into());
            }
        });
        for (position, (key, value)) in options.into_iter().enumerate() {
            match key {
                "username" => self.username = Some(value),
                "password" => self.password = Some(value),
                // Other options (tokenauth, …) do not apply to these modules' use here. The
                // key is not repeated: a mis-quoted password can split into "keys".
                _ => {
                    return Err(format!(
                        "option {} is not username or password (the only ones supported)",
                        position + 1
                    ));
                }
            }
        }
        Ok(())
    }

    /// The checked settings: everything a protocol needs is there, and nothing it would
    /// ignore. Errors name the property to fix.
    pub(crate) fn resolve(self) -> Result<Resolved, (&'static str, String)> {
        let protocol = self.protocol.unwrap_or_default();
        let name = |p: SecurityProtocol| match p {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        };
        let unused = |property: &'static str, what: &str| {
            Err((
                property,
                format!(
                    "{what} is set but security.protocol is {} (set it to {})",
                    name(protocol),
                    if what.starts_with("TLS") {
                        "SSL or SASL_SSL"
                    } else {
                        "SASL_PLAINTEXT or SASL_SSL"
                    }
                ),
            ))
        };
        let tls = if protocol.uses_tls() {
            let client_identity = match (self.certificate_location, self.key_location) {
                (Some(cert), Some(key)) => Some((cert, key)),
                (None, None) => None,
                (Some(_), None) => {
                    return Err((
                        "ssl.key.location",
                        "missing: ssl.certificate.location needs its private key".into(),
                    ));
                }
                (None, Some(_)) => {
                    return Err((
                        "ssl.certificate.location",
                        "missing: ssl.key.location needs its certificate".into(),
                    ));
                }
            };
            Some(TlsFiles {
                ca: self.ca_location,
                client_identity,
            })
        } else {
            if self.ca_location.is_some() {
                return unused("ssl.ca.location", "TLS (ssl.ca.location)");
            }
            if self.certificate_location.is_some() {
                return unused("ssl.certificate.location", "TLS (ssl.certificate.location)");
            }
            if self.key_location.is_some() {
                return unused("ssl.key.location", "TLS (ssl.key.location)");
            }
            None
        };
        let sasl = if protocol.uses_sasl() {
            let mechanism = self.mechanism.ok_or((
                "sasl.mechanism",
                format!(
                    "missing: security.protocol {} needs PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 \
                     (OAUTHBEARER: set it in code)",
                    name(protocol)
                ),
            ))?;
            match (self.jaas_module, mechanism) {
                (
                    Some(JaasModule::Plain),
                    PasswordMechanism::ScramSha256 | PasswordMechanism::ScramSha512,
                )
                | (Some(JaasModule::Scram), PasswordMechanism::Plain) => {
                    return Err((
                        "sasl.jaas.config",
                        "its login module does not match sasl.mechanism".into(),
                    ));
                }
                _ => {}
            }
            let username = self.username.ok_or((
                "sasl.username",
                "missing (or give username in sasl.jaas.config)".into(),
            ))?;
            let password = self.password.ok_or((
                "sasl.password",
                "missing (or give password in sasl.jaas.config)".into(),
            ))?;
            Some(PasswordLogin {
                mechanism,
                username,
                password,
            })
        } else {
            if self.mechanism.is_some() {
                return unused("sasl.mechanism", "SASL (sasl.mechanism)");
            }
            if self.username.is_some() || self.password.is_some() || self.jaas_module.is_some() {
                let property = if self.jaas_module.is_some() {
                    "sasl.jaas.config"
                } else if self.username.is_some() {
                    "sasl.username"
                } else {
                    "sasl.password"
                };
                return unused(property, "SASL credentials");
            }
            None
        };
        Ok(Resolved { tls, sasl })
    }
}

/// Checked security settings.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub(crate) tls: Option<TlsFiles>,
    pub(crate) sasl: Option<PasswordLogin>,
}

/// The TLS files of `ssl.*`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TlsFiles {
    /// `ssl.ca.location`; `None`: the system's roots.
    pub(crate) ca: Option<PathBuf>,
    /// `ssl.certificate.location` and `ssl.key.location`.
    pub(crate) client_identity: Option<(PathBuf, PathBuf)>,
}

/// A SASL login with a password.
#[derive(PartialEq, Eq)]
pub(crate) struct PasswordLogin {
    pub(crate) mechanism: PasswordMechanism,
    pub(crate) username: String,
    pub(crate) password: String,
}

impl std::fmt::Debug for PasswordLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordLogin")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

/// Resolves `settings` into `config`'s TLS and SASL settings.
pub(crate) fn apply(
    settings: SecuritySettings,
    config: &mut StreamsConfig,
) -> Result<(), (&'static str, String)> {
    let resolved = settings.resolve()?;
    config.tls = resolved.tls.map(|files| {
        let mut tls = TlsConfig::new();
        if let Some(ca) = files.ca {
            tls = tls.with_ca_file(ca);
        }
        if let Some((certificate, key)) = files.client_identity {
            tls = tls.with_client_certificate(certificate, key);
        }
        tls
    });
    config.engine.sasl = resolved.sasl.map(|login| match login.mechanism {
        PasswordMechanism::Plain => SaslConfig::plain(login.username, login.password),
        PasswordMechanism::ScramSha256 => SaslConfig::scram_sha256(login.username, login.password),
        PasswordMechanism::ScramSha512 => SaslConfig::scram_sha512(login.username, login.password),
    });
    Ok(())
}

/// A `sasl.jaas.config` line: its login module and its `key=value` options, in order.
type JaasLine<'a> = (&'a str, Vec<(&'a str, String)>);

/// Splits `module required key="value" …;` into the module and its options. Values are
/// double-quoted (`\"` and `\\` escaped) or bare words.
fn parse_jaas(v: &str) -> Result<JaasLine<'_>, String> {
    let v = v.trim();
    let body = v
        .strip_suffix(';')
        .ok_or("it does not end with `;`")?
        .trim();
    let (module, rest) = body
        .split_once(char::is_whitespace)
        .ok_or("it names no login module flag (`required`)")?;
    let rest = rest.trim_start();
    let rest = rest
        .strip_prefix("required")
        .ok_or("the login module flag is not `required`")?;
    let mut options = Vec::new();
    let mut chars = rest.char_indices().peekable();
    loop {
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let Some(&(start, _)) = chars.peek() else {
            break;
        };
        while chars
            .next_if(|(_, c)| *c != '=' && !c.is_whitespace())
            .is_some()
        {}
        let end = chars.peek().map_or(rest.len(), |&(i, _)| i);
        let key = &rest[start..end];
        if chars.next().map(|(_, c)| c) != Some('=') {
            return Err(format!("option {} has no `=`", options.len() + 1));
        }
        let mut value = String::new();
        if chars.next_if(|(_, c)| *c == '"').is_some() {
            loop {
                match chars.next() {
                    Some((_, '"')) => break,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, c)) => value.push(c),
                        None => {
                            return Err(format!(
                                "option {}: unterminated quote",
                                options.len() + 1
                            ));
                        }
                    },
                    Some((_, c)) => value.push(c),
                    None => {
                        return Err(format!("option {}: unterminated quote", options.len() + 1));
                    }
                }
            }
        } else {
            while let Some((_, c)) = chars.next_if(|(_, c)| !c.is_whitespace()) {
                value.push(c);
            }
        }
        options.push((key, value));
    }
    Ok((module, options))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jaas_lines_of_the_java_clients_parse() {
        let (module, options) = parse_jaas(
            r#"org.apache.kafka.common.security.scram.ScramLoginModule required username="alice" password="p\"w d";"#,
        )
        .unwrap();
        assert_eq!(
            module,
            "org.apache.kafka.common.security.scram.ScramLoginModule"
        );
        assert_eq!(
            options,
            vec![
                ("username", "alice".to_owned()),
                ("password", "p\"w d".to_owned())
            ]
        );
        assert!(parse_jaas("PlainLoginModule required username=\"a\"").is_err());
        assert!(parse_jaas("PlainLoginModule optional username=\"a\";").is_err());
        assert!(parse_jaas("PlainLoginModule required username=\"a;").is_err());
    }

    #[test]
    fn protocols_parse_in_any_case() {
        assert_eq!("sasl_ssl".parse(), Ok(SecurityProtocol::SaslSsl));
        assert_eq!("PLAINTEXT".parse(), Ok(SecurityProtocol::Plaintext));
        assert!("TLS".parse::<SecurityProtocol>().is_err());
    }

    #[test]
    fn password_login_debug_hides_the_password() {
        let login = PasswordLogin {
            mechanism: PasswordMechanism::Plain,
            username: "alice".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{login:?}").contains("hunter2"));
    }
}
