//! Change detection for a local repository: file-system notifications on the git directory's
//! `refs/` and `packed-refs` (debounced), plus the jittered poll interval used for every
//! repository as a safety net (and for fetching remote ones).
//!
//! A notification only *triggers* a reconcile; the reconcile reads the branch itself, so a
//! missed or spurious event costs at most one poll interval or one no-op reconcile.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};

/// Keeps the watch alive; dropping it stops watching.
pub struct RefWatcher {
    _debouncer: Debouncer<notify::RecommendedWatcher, RecommendedCache>,
}

impl std::fmt::Debug for RefWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefWatcher")
    }
}

/// The directory holding `refs/` and `packed-refs` for the repository at `path` (the git
/// directory of a bare repository or of a work tree's `.git`; the common directory of a
/// linked work tree).
pub fn refs_dir(path: &Path) -> Result<PathBuf, String> {
    let repo =
        git2::Repository::open(path).map_err(|e| format!("{}: {}", path.display(), e.message()))?;
    Ok(repo.commondir().to_path_buf())
}

fn is_ref_path(git_dir: &Path, p: &Path) -> bool {
    p.starts_with(git_dir.join("refs"))
        || p.file_name()
            .is_some_and(|n| n == "packed-refs" || n == "packed-refs.lock" || n == "HEAD")
}

/// Watches the refs of the git directory `git_dir`; `on_change` runs (on the watcher's
/// thread) once per debounced burst of ref changes.
pub fn watch_refs(
    git_dir: &Path,
    debounce: Duration,
    on_change: impl Fn() + Send + 'static,
) -> notify::Result<RefWatcher> {
    let dir = git_dir.to_path_buf();
    let mut debouncer = new_debouncer(debounce, None, move |res: DebounceEventResult| match res {
        Ok(events) => {
            // Reads (including the controller's own) are not changes.
            if events
                .iter()
                .filter(|e| !e.kind.is_access() && !e.kind.is_other())
                .any(|e| e.paths.iter().any(|p| is_ref_path(&dir, p)))
            {
                on_change();
            }
        }
        Err(errors) => {
            for e in errors {
                tracing::warn!("watching refs: {e}");
            }
        }
    })?;
    std::fs::create_dir_all(git_dir.join("refs"))?;
    debouncer.watch(git_dir.join("refs"), RecursiveMode::Recursive)?;
    debouncer.watch(git_dir, RecursiveMode::NonRecursive)?;
    Ok(RefWatcher {
        _debouncer: debouncer,
    })
}

/// `interval` ±10 %, so replicas (and many controllers behind one forge) do not poll in step.
pub fn jittered(interval: Duration) -> Duration {
    let factor = 0.9 + rand::random::<f64>() * 0.2;
    interval.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..100 {
            let d = jittered(Duration::from_secs(100));
            assert!(
                d >= Duration::from_secs(90) && d <= Duration::from_secs(110),
                "{d:?}"
            );
        }
    }

    #[test]
    fn a_ref_update_is_noticed() {
        let dir = tempfile::tempdir().expect("tmp");
        let git = dir.path().join("repo.git");
        std::fs::create_dir_all(git.join("refs/heads")).expect("mkdir");
        let (tx, rx) = mpsc::channel();
        let _w = watch_refs(&git, Duration::from_millis(50), move || {
            let _ = tx.send(());
        })
        .expect("watch");
        // Unrelated files do not trigger.
        std::fs::write(git.join("index"), b"x").expect("write");
        assert!(rx.recv_timeout(Duration::from_millis(400)).is_err());
        std::fs::write(git.join("refs/heads/main"), b"0123\n").expect("write");
        rx.recv_timeout(Duration::from_secs(5)).expect("notified");
    }
}
