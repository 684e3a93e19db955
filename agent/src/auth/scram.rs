//! The server side of SCRAM (RFC 5802, RFC 7677), as Kafka's SASL/SCRAM
//! uses it: a client-first message, the server's challenge, a client-final
//! message with its proof, and the server's signature. A pure state
//! machine: the server's nonce and the user's credential are given to it.
//!
//! Channel binding is not offered (`n,,` and `y,,` headers only), as in
//! Kafka; extensions in the client-first message are ignored.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use silt_metadata::catalog::ScramCredential;

use super::secret::{digest_of, hmac_of, same, Mechanism};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("channel binding is not supported")]
    ChannelBinding,
    #[error("authentication failed")]
    Failed,
    #[error("a SCRAM message out of order")]
    State,
}

#[derive(Debug)]
enum State {
    First,
    Final {
        user: String,
        client_first_bare: String,
        server_first: String,
        nonce: String,
        gs2: String,
        credential: ScramCredential,
    },
    Done,
}

/// One SCRAM exchange.
#[derive(Debug)]
pub struct ScramServer {
    mechanism: Mechanism,
    state: State,
}

/// `name=value` attributes of a SCRAM message, in order.
fn attributes(msg: &str) -> Vec<(char, &str)> {
    msg.split(',')
        .filter_map(|part| {
            let mut chars = part.chars();
            let key = chars.next()?;
            part.get(1..)?.strip_prefix('=').map(|v| (key, v))
        })
        .collect()
}

fn attribute<'a>(attrs: &[(char, &'a str)], key: char) -> Option<&'a str> {
    attrs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// A SCRAM user name: `=2C` is `,` and `=3D` is `=`.
fn unescape(name: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        match rest.get(at..at + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed("a user name with a bad escape")),
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

impl ScramServer {
    pub fn new(mechanism: Mechanism) -> ScramServer {
        ScramServer { mechanism, state: State::First }
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// Whether the challenge went out, so the next message is the proof.
    pub fn awaits_proof(&self) -> bool {
        matches!(self.state, State::Final { .. })
    }

    /// Reads the client-first message and answers the server-first one.
    /// `lookup` gives the named user's credential (None: no such user,
    /// which fails the exchange like a wrong password would).
    pub fn first(
        &mut self,
        msg: &[u8],
        server_nonce: &str,
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
    ) -> Result<String, ScramError> {
        if !matches!(self.state, State::First) {
            return Err(ScramError::State);
        }
        self.state = State::Done;
        let msg = std::str::from_utf8(msg).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        // gs2-header: a cbind flag, an optional authzid, then the bare message.
        let (flag, rest) = msg.split_once(',').ok_or(ScramError::Malformed("no GS2 header"))?;
        let (_authzid, bare) = rest.split_once(',').ok_or(ScramError::Malformed("no GS2 header"))?;
        match flag {
            "n" | "y" => {}
            f if f.starts_with("p=") => return Err(ScramError::ChannelBinding),
            _ => return Err(ScramError::Malformed("a bad channel binding flag")),
        }
        let gs2 = &msg[..msg.len() - bare.len()];
        let attrs = attributes(bare);
        let user = unescape(attribute(&attrs, 'n').ok_or(ScramError::Malformed("no user name"))?)?;
        let client_nonce = attribute(&attrs, 'r').ok_or(ScramError::Malformed("no nonce"))?;
        if client_nonce.is_empty() {
            return Err(ScramError::Malformed("an empty nonce"));
        }
        let credential = lookup(&user).ok_or(ScramError::Failed)?;
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!("r={nonce},s={},i={}", B64.encode(&credential.salt), credential.iterations);
        self.state = State::Final {
            user,
            client_first_bare: bare.to_string(),
            server_first: server_first.clone(),
            nonce,
            gs2: gs2.to_string(),
            credential,
        };
        Ok(server_first)
    }

    /// Checks the client-final message's proof; on success the
    /// server-final message and the user it proved to be.
    pub fn last(&mut self, msg: &[u8]) -> Result<(String, String), ScramError> {
        let State::Final { user, client_first_bare, server_first, nonce, gs2, credential } =
            std::mem::replace(&mut self.state, State::Done)
        else {
            return Err(ScramError::State);
        };
        let msg = std::str::from_utf8(msg).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let at = msg.rfind(",p=").ok_or(ScramError::Malformed("no proof"))?;
        let (without_proof, proof) = (&msg[..at], &msg[at + 3..]);
        let attrs = attributes(without_proof);
        let binding = attribute(&attrs, 'c').ok_or(ScramError::Malformed("no channel binding"))?;
        if B64.decode(binding).ok().as_deref() != Some(gs2.as_bytes()) {
            return Err(ScramError::Failed);
        }
        // The nonce must end with the one the challenge gave, as Kafka's
        // brokers check: librdkafka puts its own nonce in front once more.
        if !attribute(&attrs, 'r').is_some_and(|r| r.ends_with(nonce.as_str())) {
            return Err(ScramError::Failed);
        }
        let proof = B64.decode(proof).map_err(|_| ScramError::Malformed("a proof that is not base64"))?;
        let m = self.mechanism;
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let client_signature = hmac_of(m, &credential.stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Err(ScramError::Failed);
        }
        let client_key: Vec<u8> = proof.iter().zip(&client_signature).map(|(a, b)| a ^ b).collect();
        if !same(&digest_of(m, &client_key), &credential.stored_key) {
            return Err(ScramError::Failed);
        }
        let server_signature = hmac_of(m, &credential.server_key, auth_message.as_bytes());
        Ok((format!("v={}", B64.encode(server_signature)), user))
    }
}

/// A SASL/PLAIN message: `authzid NUL user NUL password`.
pub fn plain(msg: &[u8]) -> Result<(String, String), ScramError> {
    let text = std::str::from_utf8(msg).map_err(|_| ScramError::Malformed("not UTF-8"))?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(user), Some(password), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ScramError::Malformed("PLAIN is authzid, user and password, NUL-separated"));
    };
    if !authzid.is_empty() && authzid != user {
        return Err(ScramError::Failed);
    }
    Ok((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::secret::scram_credential;

    fn rfc_credential() -> ScramCredential {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        scram_credential(Mechanism::Sha256, b"pencil", &salt, 4096)
    }

    const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const FINAL: &str =
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";

    #[test]
    fn the_rfc_7677_exchange() {
        let mut s = ScramServer::new(Mechanism::Sha256);
        let first = s.first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO", SERVER_NONCE, |u| (u == "user").then(rfc_credential));
        assert_eq!(
            first.unwrap(),
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let (last, user) = s.last(FINAL.as_bytes()).unwrap();
        assert_eq!(last, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
        assert_eq!(user, "user");
        assert_eq!(s.last(FINAL.as_bytes()), Err(ScramError::State), "an exchange runs once");
    }

    /// A client's final message for `nonce_sent`, proving "pencil".
    fn client_final(first_bare: &str, server_first: &str, nonce_sent: &str) -> String {
        use crate::auth::secret::{hmac_of, salted_password};
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = salted_password(Mechanism::Sha256, b"pencil", &salt, 4096);
        let client_key = hmac_of(Mechanism::Sha256, &salted, b"Client Key");
        let stored = digest_of(Mechanism::Sha256, &client_key);
        let without_proof = format!("c=biws,r={nonce_sent}");
        let auth_message = format!("{first_bare},{server_first},{without_proof}");
        let signature = hmac_of(Mechanism::Sha256, &stored, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        format!("{without_proof},p={}", B64.encode(proof))
    }

    #[test]
    fn a_final_nonce_need_only_end_with_the_challenge_s_as_librdkafka_sends_it() {
        let mut s = ScramServer::new(Mechanism::Sha256);
        let first = s.first(b"n,,n=user,r=abc", "XYZ", |_| Some(rfc_credential())).unwrap();
        let doubled = client_final("n=user,r=abc", &first, "abcabcXYZ");
        assert!(s.last(doubled.as_bytes()).is_ok());
        let mut s = ScramServer::new(Mechanism::Sha256);
        let first = s.first(b"n,,n=user,r=abc", "XYZ", |_| Some(rfc_credential())).unwrap();
        let cut = client_final("n=user,r=abc", &first, "abcXY");
        assert_eq!(s.last(cut.as_bytes()), Err(ScramError::Failed));
    }

    #[test]
    fn wrong_proofs_users_nonces_and_garbage_fail() {
        let start = || {
            let mut s = ScramServer::new(Mechanism::Sha256);
            s.first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO", SERVER_NONCE, |_| Some(rfc_credential())).unwrap();
            s
        };
        let wrong_proof = FINAL.replace("p=dHzb", "p=dHzc");
        assert!(start().last(wrong_proof.as_bytes()).is_err());
        let wrong_nonce = FINAL.replace("k0,p", "k1,p");
        assert_eq!(start().last(wrong_nonce.as_bytes()), Err(ScramError::Failed));
        let wrong_binding = FINAL.replace("c=biws", "c=eSws");
        assert_eq!(start().last(wrong_binding.as_bytes()), Err(ScramError::Failed));
        let mut s = ScramServer::new(Mechanism::Sha256);
        assert_eq!(s.first(b"n,,n=nobody,r=abc", "x", |_| None), Err(ScramError::Failed));
        for garbage in [&b""[..], b"n", b"n,,", b"p=tls-unique,,n=u,r=a", b"n,,n=u=5,r=a", b"\xff,,n=u,r=a"] {
            let mut s = ScramServer::new(Mechanism::Sha256);
            assert!(s.first(garbage, "x", |_| Some(rfc_credential())).is_err(), "{garbage:?}");
        }
        assert_eq!(unescape("a=2Cb=3Dc").unwrap(), "a,b=c");
    }

    #[test]
    fn plain_messages() {
        assert_eq!(plain(b"\0bob\0secret").unwrap(), ("bob".into(), "secret".into()));
        assert_eq!(plain(b"bob\0bob\0secret").unwrap(), ("bob".into(), "secret".into()));
        assert!(plain(b"eve\0bob\0secret").is_err());
        assert!(plain(b"bob\0secret").is_err());
    }
}
