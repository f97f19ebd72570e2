//! Client tokens (contract section 11): a JWT in compact form, presented in
//! `HELLO <user> <token>`, checked by a [`Verifier`] built from one key and
//! its one algorithm: HS256 with a shared secret, RS256 with an RSA public
//! key, ES256 with a P-256 public key.
//!
//! A token is accepted when its signature verifies under that algorithm
//! only (so `alg: none`, or an HS256 token signed with the public key as
//! its secret, is refused), its `sub` is the user, its `exp` is in the
//! future give or take [`LEEWAY`], and its `nbf`, where present, has come
//! (with the same leeway). The optional `topics` claim becomes a
//! [`TopicGrant`]: names, where one ending in `*` stands for every topic
//! with that prefix.
//!
//! This crate does no I/O: the binary reads key files and hands the
//! verifier in, the connection asks it. Errors say what was wrong with a
//! token, never what the token or the key holds.

#![warn(missing_docs)]

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// How far `exp` and `nbf` may be off (clock skew between the token's
/// issuer and the gateway).
pub const LEEWAY: Duration = Duration::from_secs(30);

/// Checks client tokens against one key.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    algorithm: Algorithm,
}

impl fmt::Debug for Verifier {
    // Never the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// A key that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// An empty HS256 secret.
    #[error("the token secret is empty")]
    EmptySecret,
    /// Neither an RSA nor an EC (P-256) public key in PEM.
    #[error("not a PEM RSA or EC (P-256) public key")]
    NotAPublicKey,
}

/// Why a token was refused. The client is only told `ERR unauthorized`;
/// this is for logs and tests, and holds nothing of the token.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum TokenError {
    /// `HELLO` carried no token at all (the caller's finding: the
    /// verifier is only asked about a token).
    #[error("no token")]
    Missing,
    /// Not a JWT, a claim missing or of the wrong type.
    #[error("malformed token")]
    Malformed,
    /// Not signed by the configured key with its algorithm: another key,
    /// another algorithm, or no signature.
    #[error("bad signature")]
    BadSignature,
    /// `exp` has passed, beyond the leeway.
    #[error("token expired")]
    Expired,
    /// `nbf` has not come yet, beyond the leeway.
    #[error("token not valid yet")]
    NotYetValid,
    /// `sub` is not the user of the `HELLO`.
    #[error("token for another user")]
    WrongSubject,
}

impl TokenError {
    /// The reason as one word, for a log field an operator can filter on.
    pub fn class(self) -> &'static str {
        match self {
            TokenError::Missing => "missing",
            TokenError::Malformed => "malformed",
            TokenError::BadSignature => "bad_signature",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::WrongSubject => "wrong_sub",
        }
    }
}

/// What an accepted token allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// When it runs out (its `exp`).
    pub expires_at: SystemTime,
    /// The topics it limits the connection to; `None`: any topic.
    pub topics: Option<TopicGrant>,
}

/// The `topics` claim: exact names and prefixes (a name ending in `*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicGrant {
    patterns: Vec<String>,
}

impl TopicGrant {
    /// A grant of these names and prefixes.
    pub fn new(patterns: Vec<String>) -> Self {
        Self { patterns }
    }

    /// Whether `topic` is one of the names, or starts with one of the
    /// prefixes.
    pub fn allows(&self, topic: &str) -> bool {
        self.patterns
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => topic.starts_with(prefix),
                None => pattern == topic,
            })
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default)]
    topics: Option<Vec<String>>,
}

impl Verifier {
    /// HS256 with a shared secret.
    pub fn hs256(secret: &[u8]) -> Result<Self, KeyError> {
        if secret.is_empty() {
            return Err(KeyError::EmptySecret);
        }
        Ok(Self::new(
            DecodingKey::from_secret(secret),
            Algorithm::HS256,
        ))
    }

    /// RS256 or ES256, after the kind of public key in `pem`.
    pub fn public_key_pem(pem: &[u8]) -> Result<Self, KeyError> {
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            return Ok(Self::new(key, Algorithm::RS256));
        }
        if let Ok(key) = DecodingKey::from_ec_pem(pem) {
            return Ok(Self::new(key, Algorithm::ES256));
        }
        Err(KeyError::NotAPublicKey)
    }

    fn new(key: DecodingKey, algorithm: Algorithm) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            key,
            validation,
            algorithm,
        }
    }

    /// The algorithm tokens must be signed with.
    pub fn algorithm(&self) -> &'static str {
        match self.algorithm {
            Algorithm::HS256 => "HS256",
            Algorithm::RS256 => "RS256",
            Algorithm::ES256 => "ES256",
            _ => "other",
        }
    }

    /// Checks `token` for `user`.
    pub fn verify(&self, token: &[u8], user: &str) -> Result<Grant, TokenError> {
        use jsonwebtoken::errors::ErrorKind;
        let token = std::str::from_utf8(token).map_err(|_| TokenError::Malformed)?;
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|err| {
                match err.kind() {
                    ErrorKind::ExpiredSignature => TokenError::Expired,
                    ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                    // The header names an algorithm other than the key's,
                    // or the signature does not verify.
                    ErrorKind::InvalidAlgorithm | ErrorKind::InvalidSignature => {
                        TokenError::BadSignature
                    }
                    _ => TokenError::Malformed,
                }
            })?;
        let claims = data.claims;
        if claims.sub != user {
            return Err(TokenError::WrongSubject);
        }
        // An `exp` past what the clock can hold is as good as never.
        let expires_at = UNIX_EPOCH
            .checked_add(Duration::from_secs(claims.exp))
            .unwrap_or_else(|| UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX) * 64));
        Ok(Grant {
            expires_at,
            topics: claims.topics.map(TopicGrant::new),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::{Value, json};

    const SECRET: &[u8] = b"a secret of enough length for HS256";

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn hs(claims: &Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    fn check(token: &str, user: &str) -> Result<Grant, TokenError> {
        Verifier::hs256(SECRET)
            .unwrap()
            .verify(token.as_bytes(), user)
    }

    #[test]
    fn accepts_a_token_for_its_user() {
        let exp = now() + 60;
        let grant = check(&hs(&json!({"sub": "alice", "exp": exp})), "alice").unwrap();
        assert_eq!(grant.expires_at, UNIX_EPOCH + Duration::from_secs(exp));
        assert_eq!(grant.topics, None);
    }

    #[test]
    fn refuses_what_it_must() {
        let n = now();
        let cases = [
            (
                json!({"sub": "bob", "exp": n + 60}),
                TokenError::WrongSubject,
            ),
            (json!({"sub": "alice", "exp": n - 31}), TokenError::Expired),
            (
                json!({"sub": "alice", "exp": n + 60, "nbf": n + 31}),
                TokenError::NotYetValid,
            ),
            (json!({"sub": "alice"}), TokenError::Malformed),
            (json!({"exp": n + 60}), TokenError::Malformed),
            (
                json!({"sub": "alice", "exp": "soon"}),
                TokenError::Malformed,
            ),
            (
                json!({"sub": "alice", "exp": n + 60, "topics": "news"}),
                TokenError::Malformed,
            ),
        ];
        for (claims, expected) in cases {
            assert_eq!(check(&hs(&claims), "alice"), Err(expected), "{claims}");
        }
    }

    #[test]
    fn honours_the_leeway() {
        let n = now();
        assert!(check(&hs(&json!({"sub": "a", "exp": n - 20})), "a").is_ok());
        let early = json!({"sub": "a", "exp": n + 60, "nbf": n + 20});
        assert!(check(&hs(&early), "a").is_ok());
    }

    #[test]
    fn refuses_other_keys_and_algorithms() {
        let claims = json!({"sub": "alice", "exp": now() + 60});
        let other = encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"another secret"),
        )
        .unwrap();
        assert_eq!(check(&other, "alice"), Err(TokenError::BadSignature));
        let hs384 = encode(
            &Header::new(Algorithm::HS384),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(check(&hs384, "alice"), Err(TokenError::BadSignature));
        // `alg: none`, unsigned.
        let b64 = |v: &Value| {
            use base64_url::encode;
            encode(v.to_string().as_bytes())
        };
        let none = format!("{}.{}.", b64(&json!({"alg": "none"})), b64(&claims));
        // `none` is no algorithm jsonwebtoken knows: the header does not parse.
        assert_eq!(check(&none, "alice"), Err(TokenError::Malformed));
        for junk in ["", "x", "a.b.c", "..", "\u{0}"] {
            assert_eq!(check(junk, "alice"), Err(TokenError::Malformed), "{junk:?}");
        }
        assert_eq!(
            Verifier::hs256(SECRET)
                .unwrap()
                .verify(b"\xff\xfe", "alice"),
            Err(TokenError::Malformed)
        );
    }

    /// Base64url without padding, enough to forge a token by hand.
    mod base64_url {
        pub fn encode(bytes: &[u8]) -> String {
            const ALPHABET: &[u8; 64] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let mut out = String::new();
            for chunk in bytes.chunks(3) {
                let n = chunk
                    .iter()
                    .enumerate()
                    .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
                for i in 0..=chunk.len() {
                    out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
                }
            }
            out
        }
    }

    #[test]
    fn keys_that_cannot_be_used() {
        assert_eq!(Verifier::hs256(b"").err(), Some(KeyError::EmptySecret));
        assert_eq!(
            Verifier::public_key_pem(b"-----BEGIN NOTHING-----").err(),
            Some(KeyError::NotAPublicKey)
        );
        assert!(!format!("{:?}", Verifier::hs256(SECRET).unwrap()).contains("secret"));
    }

    #[test]
    fn topic_grants() {
        let grant = TopicGrant::new(vec!["news".into(), "chat/*".into(), "x*".into()]);
        for (topic, allowed) in [
            ("news", true),
            ("news/eu", false),
            ("newsy", false),
            ("chat/1", true),
            ("chat/", true),
            ("chat", false),
            ("xyz", true),
            ("x", true),
            ("y", false),
        ] {
            assert_eq!(grant.allows(topic), allowed, "{topic}");
        }
        assert!(!TopicGrant::new(Vec::new()).allows("news"));
        assert!(TopicGrant::new(vec!["*".into()]).allows("anything"));
        let n = now();
        let claims = json!({"sub": "a", "exp": n + 60, "topics": ["news", "chat/*"]});
        let grant = check(&hs(&claims), "a").unwrap();
        assert!(grant.topics.as_ref().unwrap().allows("chat/x"));
        assert!(!grant.topics.unwrap().allows("other"));
    }
}
