//! Commit signatures: SSHSIG (`gpg.format = ssh`, namespace `git`) verified against the
//! `signing_keys` of the policy's members. OpenPGP and X.509 signatures are reported as
//! present but not verifiable.

use git2::{ErrorCode, Oid, Repository};
use quiver_core::Policy;
use quiver_core::approval::SignatureCheck;
use ssh_key::{HashAlg, PublicKey, SshSig};

/// The SSHSIG namespace git signs commits under.
pub const GIT_NAMESPACE: &str = "git";

/// Checks the signature of a commit; `None` when it is not signed.
pub fn check_commit(git: &Repository, oid: Oid, policy: &Policy) -> Option<SignatureCheck> {
    let (signature, signed) = match git.extract_signature(&oid, None) {
        Ok(pair) => pair,
        Err(e) if e.code() == ErrorCode::NotFound => return None,
        Err(e) => {
            return Some(SignatureCheck {
                signer_member: None,
                valid: false,
                detail: format!("cannot read the signature: {}", e.message()),
            });
        }
    };
    Some(verify(&signature, &signed, policy))
}

/// Verifies an armored signature over `signed` bytes.
pub fn verify(signature: &[u8], signed: &[u8], policy: &Policy) -> SignatureCheck {
    let fail = |detail: String| SignatureCheck {
        signer_member: None,
        valid: false,
        detail,
    };
    let text = String::from_utf8_lossy(signature);
    if !text
        .trim_start()
        .starts_with("-----BEGIN SSH SIGNATURE-----")
    {
        return fail("not an SSH signature (OpenPGP and X.509 signatures are not supported; sign with gpg.format = ssh)".into());
    }
    let sig = match SshSig::from_pem(text.trim()) {
        Ok(s) => s,
        Err(e) => return fail(format!("malformed SSH signature: {e}")),
    };
    if sig.namespace() != GIT_NAMESPACE {
        return fail(format!(
            "SSH signature namespace is `{}`, not `git`",
            sig.namespace()
        ));
    }
    let key = PublicKey::from(sig.public_key().clone());
    let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
    if let Err(e) = key.verify(GIT_NAMESPACE, signed, &sig) {
        return fail(format!("{} {fingerprint}: {e}", key.algorithm()));
    }
    let signer = policy.members.iter().find(|m| {
        m.signing_keys.iter().any(|k| {
            PublicKey::from_openssh(k.trim())
                .map(|pk| pk.key_data() == sig.public_key())
                .unwrap_or(false)
        })
    });
    SignatureCheck {
        signer_member: signer.map(|m| m.id.clone()),
        valid: true,
        detail: format!("{} {fingerprint}", key.algorithm()),
    }
}
