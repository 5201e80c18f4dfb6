//! Mirroring a remote library repository into `state_dir/mirror.git` with git2.
//!
//! Only the tracked branch is fetched (force-updated, so a rewrite upstream shows up as a
//! rewrite here and is handled by the reconcile, not hidden by the fetch). Credentials come
//! from the configuration's token or SSH key and are handed to libgit2 in a callback; they
//! never appear in logs or errors, and userinfo in the URL is redacted when printed.

use std::path::PathBuf;

use git2::{Cred, CredentialType, FetchOptions, RemoteCallbacks, Repository};

use crate::config::FetchAuth;
use crate::source::SourceError;

/// A remote repository and its local mirror.
#[derive(Debug, Clone)]
pub struct Mirror {
    url: String,
    dir: PathBuf,
    branch: String,
    auth: FetchAuth,
}

/// The URL with any `user:password@` removed, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

fn url_username(url: &str) -> Option<String> {
    let rest = &url[url.find("://")? + 3..];
    let at = rest.find('@')?;
    let userinfo = &rest[..at];
    if userinfo.contains('/') {
        return None;
    }
    Some(userinfo.split(':').next().unwrap_or(userinfo).to_string()).filter(|u| !u.is_empty())
}

impl Mirror {
    /// A mirror of `url` in `dir` tracking `branch`.
    pub fn new(url: String, dir: PathBuf, branch: String, auth: FetchAuth) -> Mirror {
        Mirror {
            url,
            dir,
            branch,
            auth,
        }
    }

    /// Fetches the branch (creating the mirror on first use).
    pub fn fetch(&self) -> Result<(), SourceError> {
        let fail = |what: &str, e: git2::Error| {
            SourceError::new(format!(
                "fetch {} ({}): {what}: {}",
                redact_url(&self.url),
                self.branch,
                e.message()
            ))
        };
        let repo = if self.dir.join("HEAD").exists() {
            Repository::open_bare(&self.dir).map_err(|e| fail("open mirror", e))?
        } else {
            std::fs::create_dir_all(&self.dir)
                .map_err(|e| SourceError::new(format!("create {}: {e}", self.dir.display())))?;
            Repository::init_bare(&self.dir).map_err(|e| fail("create mirror", e))?
        };
        let mut remote = repo
            .remote_anonymous(&self.url)
            .map_err(|e| fail("remote", e))?;
        let mut callbacks = RemoteCallbacks::new();
        let mut attempts = 0;
        let auth = self.auth.clone();
        let user = url_username(&self.url);
        callbacks.credentials(move |_url, username_from_url, allowed| {
            attempts += 1;
            if attempts > 3 {
                return Err(git2::Error::from_str("credentials were refused"));
            }
            let user = username_from_url
                .map(str::to_string)
                .or_else(|| user.clone());
            match &auth {
                FetchAuth::Token(t) if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) => {
                    Cred::userpass_plaintext(
                        user.as_deref().unwrap_or("x-access-token"),
                        t.expose(),
                    )
                }
                FetchAuth::SshKey(key) if allowed.contains(CredentialType::SSH_KEY) => {
                    Cred::ssh_key(user.as_deref().unwrap_or("git"), None, key, None)
                }
                _ if allowed.contains(CredentialType::USERNAME) => {
                    Cred::username(user.as_deref().unwrap_or("git"))
                }
                _ => Cred::default(),
            }
        });
        let mut opts = FetchOptions::new();
        opts.remote_callbacks(callbacks);
        opts.download_tags(git2::AutotagOption::None);
        let refspec = format!("+refs/heads/{0}:refs/heads/{0}", self.branch);
        remote
            .fetch(&[refspec.as_str()], Some(&mut opts), None)
            .map_err(|e| fail("fetch", e))?;
        // Point HEAD at the branch so tools run on the mirror see it.
        let _ = repo.set_head(&format!("refs/heads/{}", self.branch));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted_and_usernames_found() {
        assert_eq!(
            redact_url("https://bot:tok@github.com/o/r.git"),
            "https://***@github.com/o/r.git"
        );
        assert_eq!(
            redact_url("https://github.com/o/r.git"),
            "https://github.com/o/r.git"
        );
        assert_eq!(url_username("ssh://git@host/r.git").as_deref(), Some("git"));
        assert_eq!(url_username("https://host/a@b"), None);
    }
}
