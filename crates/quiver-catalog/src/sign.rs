//! Minisign keys and signatures for the catalog and timestamp.
//!
//! Minisign because its files are small, its formats are documented and stable, and an
//! operator can check a snapshot by hand with the `minisign` tool. The controller's secret key
//! is stored **unencrypted**: the controller re-signs the timestamp on a schedule, unattended,
//! so there is nobody to type a password. The key is protected by file permissions instead
//! (written 0600, refused when readable by group or others) or by the secret store it is
//! mounted from. Signatures are not deterministic (minisign uses a random nonce); the
//! determinism replicas need lives in the canonical documents.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::verify::VerifyError;

/// Why a key could not be made, read or written, or a signature made.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// Reading or writing a key file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The secret key file is readable or writable by group or others.
    #[error(
        "{path}: secret key is accessible by other users (mode {mode:o}); run `chmod 600 {path}`"
    )]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Refusing to overwrite an existing key.
    #[error("{0}: already exists; refusing to overwrite a key")]
    Exists(PathBuf),
    /// Not a minisign key, or an encrypted one.
    #[error("bad key: {0}")]
    BadKey(String),
    /// A trusted comment must be a single line.
    #[error("trusted comment must not contain a line break")]
    BadComment,
    /// Minisign refused to sign (e.g. no randomness available).
    #[error("signing failed: {0}")]
    Sign(String),
}

/// A freshly generated controller key pair.
pub struct KeyPair {
    /// The secret half.
    pub signing: SigningKey,
    /// The public half, pinned by agents.
    pub public: PublicKey,
}

/// The controller's secret key.
pub struct SigningKey {
    sk: minisign::SecretKey,
    pk: minisign::PublicKey,
}

/// A pinned public key that verifies signatures.
#[derive(Debug, Clone)]
pub struct PublicKey {
    key: minisign_verify::PublicKey,
    base64: String,
    key_id: u64,
}

impl KeyPair {
    /// Generates an unencrypted key pair (see the module docs for why unencrypted).
    pub fn generate() -> Result<KeyPair, SignError> {
        let kp = minisign::KeyPair::generate_unencrypted_keypair()
            .map_err(|e| SignError::Sign(e.to_string()))?;
        let public =
            PublicKey::decode(&kp.pk.to_base64()).map_err(|e| SignError::BadKey(e.to_string()))?;
        Ok(KeyPair {
            signing: SigningKey {
                sk: kp.sk,
                pk: kp.pk,
            },
            public,
        })
    }

    /// The secret key in minisign's own file format.
    pub fn secret_key_file_contents(&self) -> String {
        self.signing.file_contents()
    }

    /// The public key in minisign's `.pub` format.
    pub fn public_key_file_contents(&self) -> String {
        self.public.file_contents()
    }

    /// Writes both files, refusing to overwrite either. The secret key is created with mode
    /// 0600 from the start (never readable by others, even for an instant) and renamed into
    /// place, so a crash never leaves half a key.
    pub fn write(&self, secret_path: &Path, public_path: &Path) -> Result<(), SignError> {
        write_new(
            secret_path,
            self.secret_key_file_contents().as_bytes(),
            0o600,
        )?;
        write_new(
            public_path,
            self.public_key_file_contents().as_bytes(),
            0o644,
        )
    }
}

fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), SignError> {
    let io = |source| SignError::Io {
        path: path.to_owned(),
        source,
    };
    if path.exists() {
        return Err(SignError::Exists(path.to_owned()));
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, mode);
    #[cfg(not(unix))]
    let _ = mode; // Windows: the file inherits the directory's ACL.
    let result = (|| {
        let mut f = opts.open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

impl SigningKey {
    /// Reads an unencrypted minisign secret key from its file contents.
    pub fn from_file_contents(text: &str) -> Result<SigningKey, SignError> {
        let bad = |e: minisign::PError| SignError::BadKey(e.to_string());
        let sk = minisign::SecretKey::from_unencrypted_box(
            minisign::SecretKeyBox::from_string(text).map_err(bad)?,
        )
        .map_err(bad)?;
        let pk = minisign::PublicKey::from_secret_key(&sk).map_err(bad)?;
        Ok(SigningKey { sk, pk })
    }

    /// Reads the secret key file; on unix, refuses it if group or others can access it.
    pub fn from_file(path: &Path) -> Result<SigningKey, SignError> {
        let io = |source| SignError::Io {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // Checked on the open file, so the answer is about the bytes we read.
            let mode = file.metadata().map_err(io)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(SignError::InsecurePermissions {
                    path: path.to_owned(),
                    mode,
                });
            }
        }
        let text = std::io::read_to_string(file).map_err(io)?;
        Self::from_file_contents(&text)
    }

    /// The key in minisign's secret key file format.
    pub fn file_contents(&self) -> String {
        self.sk
            .to_box(Some("quiver controller secret key"))
            .expect("writing to a String cannot fail")
            .into_string()
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey::decode(&self.pk.to_base64()).expect("minisign encodes its own keys")
    }

    /// Signs `bytes` (prehashed), returning the `.minisig` file contents. The trusted comment
    /// is covered by the signature; it must be one line.
    pub fn sign(&self, bytes: &[u8], trusted_comment: &str) -> Result<String, SignError> {
        if trusted_comment.contains(['\n', '\r']) {
            return Err(SignError::BadComment);
        }
        minisign::sign(Some(&self.pk), &self.sk, bytes, Some(trusted_comment), None)
            .map(|b| b.into_string())
            .map_err(|e| SignError::Sign(e.to_string()))
    }
}

impl PublicKey {
    /// Decodes a public key from its base64 line (`RW…`) or a whole `.pub` file.
    pub fn decode(text: &str) -> Result<PublicKey, VerifyError> {
        let malformed = |reason: String| VerifyError::Malformed {
            what: "public key",
            reason,
        };
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
            .ok_or_else(|| malformed("no key found".into()))?;
        let key =
            minisign_verify::PublicKey::from_base64(line).map_err(|e| malformed(e.to_string()))?;
        let id = minisign::PublicKey::from_base64(line).map_err(|e| malformed(e.to_string()))?;
        let key_id = u64::from_le_bytes(
            id.keynum()
                .try_into()
                .map_err(|_| malformed("bad key id".into()))?,
        );
        Ok(PublicKey {
            key,
            base64: line.to_owned(),
            key_id,
        })
    }

    /// The minisign key id as 16 uppercase hex digits, as `minisign` itself prints it.
    pub fn fingerprint(&self) -> String {
        format!("{:016X}", self.key_id)
    }

    /// The bare base64 key line.
    pub fn to_base64(&self) -> String {
        self.base64.clone()
    }

    /// The key in minisign's `.pub` file format.
    pub fn file_contents(&self) -> String {
        format!(
            "untrusted comment: minisign public key {}\n{}\n",
            self.fingerprint(),
            self.base64
        )
    }

    /// Checks that `sig_text` (a `.minisig` file) is this key's signature over `bytes`,
    /// trusted comment included. Only prehashed signatures (what minisign makes today) pass.
    pub fn verify(&self, bytes: &[u8], sig_text: &str) -> Result<(), VerifyError> {
        self.verify_as("document", bytes, sig_text)
    }

    pub(crate) fn verify_as(
        &self,
        what: &'static str,
        bytes: &[u8],
        sig_text: &str,
    ) -> Result<(), VerifyError> {
        let bad = |e: minisign_verify::Error| VerifyError::BadSignature {
            what,
            reason: e.to_string(),
        };
        let sig = minisign_verify::Signature::decode(sig_text).map_err(bad)?;
        self.key.verify(bytes, &sig, false).map_err(bad)
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.base64 == other.base64
    }
}
impl Eq for PublicKey {}

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.base64)
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        write!(f, "SigningKey({:016X})", self.public_key().key_id)
    }
}
