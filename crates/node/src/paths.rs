//! Mount points the node had to create on the host (bind mounts need an existing target). They
//! are recorded and removed when the node stops, deepest first and only while empty, so the
//! host is left as it was.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Paths this node created.
#[derive(Debug, Default)]
pub struct CreatedPaths {
    paths: BTreeSet<PathBuf>,
}

impl CreatedPaths {
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
        for p in missing.into_iter().rev() {
            std::fs::create_dir(&p)?;
            self.paths.insert(p);
        }
        if dir {
            std::fs::create_dir(path)?;
        } else {
            std::fs::File::create(path)?;
        }
        self.paths.insert(path.to_path_buf());
        Ok(())
    }

    /// Removes everything recorded that is still empty, deepest first.
    pub fn remove_all(&mut self) {
        let mut all: Vec<PathBuf> = std::mem::take(&mut self.paths).into_iter().collect();
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_created_paths_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut created = CreatedPaths::default();
        created.ensure(&dir.path().join("a/b/c"), true).unwrap();
        created.ensure(&dir.path().join("a/f"), false).unwrap();
        std::fs::write(dir.path().join("keep"), "x").unwrap();
        created.ensure(&dir.path().join("keep"), false).unwrap();
        created.remove_all();
        assert!(!dir.path().join("a").exists());
        assert!(dir.path().join("keep").exists());
    }
}
