//! Mount points the node had to create on the host (a bind mount needs an existing target).
//! Several nodes may run on one machine and share mount points (for example
//! `/var/run/secrets/kubernetes.io/serviceaccount`); removing one that another node's pod has
//! mounted would detach that mount. So creations are recorded machine-wide, every running node
//! holds a shared lock, and only the last node to stop (the one that gets the exclusive lock)
//! removes them, deepest first and only while empty.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The machine-wide registry of created mount points.
#[derive(Debug)]
pub struct CreatedPaths {
    record: PathBuf,
    lock: File,
}

impl CreatedPaths {
    /// Joins the registry in `lock_dir` (blocks while a stopping node is cleaning up).
    pub fn open(lock_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(lock_dir).map_err(Error::io(lock_dir))?;
        let lock_path = lock_dir.join("mount-points.lock");
        let lock = File::create(&lock_path).map_err(Error::io(&lock_path))?;
        lock.lock_shared().map_err(Error::io(&lock_path))?;
        Ok(Self {
            record: lock_dir.join("mount-points"),
            lock,
        })
    }

    /// Makes sure `path` exists as a directory (`dir`) or file, recording what had to be created.
    pub fn ensure(&mut self, path: &Path, dir: bool) -> std::io::Result<()> {
        if path.exists() {
            return Ok(());
        }
        let mut missing = Vec::new();
        let mut cur = path.parent();
        while let Some(p) = cur {
            if p.exists() {
                break;
            }
            missing.push(p.to_path_buf());
            cur = p.parent();
        }
        let mut created = Vec::new();
        for p in missing.into_iter().rev() {
            match std::fs::create_dir(&p) {
                Ok(()) => created.push(p),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        let made = if dir {
            std::fs::create_dir(path)
        } else {
            File::create_new(path).map(|_| ())
        };
        match made {
            Ok(()) => created.push(path.to_path_buf()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let mut record = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.record)?;
        for p in created {
            writeln!(record, "{}", p.display())?;
        }
        Ok(())
    }

    /// Leaves the registry; the last node out removes every recorded path that is still empty.
    pub fn release(self) {
        if self.lock.unlock().is_err() || self.lock.try_lock().is_err() {
            return;
        }
        let text = std::fs::read_to_string(&self.record).unwrap_or_default();
        let mut all: Vec<PathBuf> = text
            .lines()
            .filter(|l| !l.is_empty())
            .map(PathBuf::from)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for p in all {
            let removed = match std::fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => std::fs::remove_dir(&p),
                Ok(m) if m.len() == 0 => std::fs::remove_file(&p),
                Ok(_) => Err(std::io::Error::other("not empty")),
                Err(_) => Ok(()),
            };
            if let Err(e) = removed {
                tracing::warn!(path = %p.display(), error = %e, "left a mount point the node created");
            }
        }
        let _ = std::fs::remove_file(&self.record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_created_paths_are_removed_and_only_by_the_last_node() {
        let dir = tempfile::tempdir().unwrap();
        let locks = dir.path().join("locks");
        let mut first = CreatedPaths::open(&locks).unwrap();
        let mut second = CreatedPaths::open(&locks).unwrap();
        first.ensure(&dir.path().join("a/b/c"), true).unwrap();
        second.ensure(&dir.path().join("a/f"), false).unwrap();
        std::fs::write(dir.path().join("keep"), "x").unwrap();
        first.ensure(&dir.path().join("keep"), false).unwrap();
        first.release();
        assert!(dir.path().join("a/b/c").exists(), "another node still runs");
        second.release();
        assert!(!dir.path().join("a").exists());
        assert!(dir.path().join("keep").exists());
    }
}
