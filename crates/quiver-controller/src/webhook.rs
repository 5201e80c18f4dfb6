//! Webhook authentication for GitHub, GitLab and Gitea push events.
//!
//! A webhook only ever *triggers* a reconcile — the controller then reads git itself — so the
//! payload is not trusted for anything. It is still authenticated, so that nobody on the
//! network can make the controller fetch in a loop: an unconfigured forge or a bad signature
//! is refused with 401 and nothing happens. Every comparison is constant-time.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{Secret, WebhookSecrets};

/// A forge that can call the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forge {
    /// `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.
    Github,
    /// `X-Gitlab-Token: <shared token>`.
    Gitlab,
    /// `X-Gitea-Signature: <hex HMAC-SHA256 of the body>`.
    Gitea,
}

impl Forge {
    /// Parses the path segment of `/v1/webhooks/{forge}`.
    pub fn from_name(name: &str) -> Option<Forge> {
        match name {
            "github" => Some(Forge::Github),
            "gitlab" => Some(Forge::Gitlab),
            "gitea" => Some(Forge::Gitea),
            _ => None,
        }
    }

    /// The header carrying the proof.
    pub fn header(self) -> &'static str {
        match self {
            Forge::Github => "x-hub-signature-256",
            Forge::Gitlab => "x-gitlab-token",
            Forge::Gitea => "x-gitea-signature",
        }
    }

    /// The configured secret for this forge.
    pub fn secret(self, secrets: &WebhookSecrets) -> Option<&Secret> {
        match self {
            Forge::Github => secrets.github.as_ref(),
            Forge::Gitlab => secrets.gitlab.as_ref(),
            Forge::Gitea => secrets.gitea.as_ref(),
        }
    }
}

/// Why a webhook was refused (logged, never sent back in detail).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WebhookRefusal {
    /// No secret is configured for this forge.
    #[error("webhook for this forge is not configured")]
    NotConfigured,
    /// The proof header is absent.
    #[error("missing signature header")]
    Missing,
    /// The proof does not match.
    #[error("bad signature")]
    BadSignature,
}

fn hmac_ok(secret: &Secret, body: &[u8], hex_sig: &[u8]) -> bool {
    let Ok(sig) = hex::decode(hex_sig.trim_ascii()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// Checks a webhook call: `header` is the value of [`Forge::header`], `body` the raw body.
pub fn verify(
    forge: Forge,
    secret: Option<&Secret>,
    header: Option<&[u8]>,
    body: &[u8],
) -> Result<(), WebhookRefusal> {
    let secret = secret.ok_or(WebhookRefusal::NotConfigured)?;
    let header = header.ok_or(WebhookRefusal::Missing)?;
    let ok = match forge {
        Forge::Github => header
            .strip_prefix(b"sha256=")
            .is_some_and(|h| hmac_ok(secret, body, h)),
        Forge::Gitea => hmac_ok(secret, body, header),
        Forge::Gitlab => {
            // Compare digests so the comparison does not leak the token's length either.
            let a = Sha256::digest(header.trim_ascii());
            let b = Sha256::digest(secret.expose().as_bytes());
            bool::from(a.ct_eq(&b))
        }
    };
    if ok {
        Ok(())
    } else {
        Err(WebhookRefusal::BadSignature)
    }
}

/// The hex HMAC-SHA256 of `body` under `secret` (what GitHub and Gitea send).
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_each_forge() {
        let s = Secret::new("topsecret");
        let body = br#"{"ref":"refs/heads/main"}"#;
        let good = format!("sha256={}", sign("topsecret", body));
        type Case<'a> = (
            Forge,
            Option<&'a Secret>,
            Option<&'a [u8]>,
            Result<(), WebhookRefusal>,
        );
        let cases: &[Case] = &[
            (Forge::Github, Some(&s), Some(good.as_bytes()), Ok(())),
            (
                Forge::Github,
                Some(&s),
                Some(&good.as_bytes()[7..]),
                Err(WebhookRefusal::BadSignature),
            ),
            (
                Forge::Github,
                Some(&s),
                Some(b"sha256=00"),
                Err(WebhookRefusal::BadSignature),
            ),
            (Forge::Github, Some(&s), None, Err(WebhookRefusal::Missing)),
            (
                Forge::Github,
                None,
                Some(good.as_bytes()),
                Err(WebhookRefusal::NotConfigured),
            ),
            (Forge::Gitea, Some(&s), Some(&good.as_bytes()[7..]), Ok(())),
            (
                Forge::Gitea,
                Some(&s),
                Some(b"zz"),
                Err(WebhookRefusal::BadSignature),
            ),
            (Forge::Gitlab, Some(&s), Some(b"topsecret"), Ok(())),
            (
                Forge::Gitlab,
                Some(&s),
                Some(b"topsecreT"),
                Err(WebhookRefusal::BadSignature),
            ),
        ];
        for (forge, secret, header, want) in cases {
            assert_eq!(
                verify(*forge, *secret, *header, body),
                *want,
                "{forge:?} {header:?}"
            );
        }
        // A tampered body fails.
        assert_eq!(
            verify(Forge::Github, Some(&s), Some(good.as_bytes()), b"{}"),
            Err(WebhookRefusal::BadSignature)
        );
    }
}
