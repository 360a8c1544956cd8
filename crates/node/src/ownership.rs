//! `fsGroup`: kubelet's volume ownership management. Every file and directory of an emptyDir,
//! claim or generated (Secret, ConfigMap, projected) volume gets the pod's `fsGroup` as its group,
//! group read (and, for writable volumes, write) permission, and directories get the setgid bit
//! so that new files inherit the group. Containers run with the `fsGroup` as a supplementary
//! group, so non-root workloads can write their volumes. With `fsGroupChangePolicy:
//! OnRootMismatch` the walk is skipped when the volume's root already has the right group and
//! permissions, as kubelet does.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use k8s_openapi::api::core::v1::Pod;

const RW_MASK: u32 = 0o660;
const RO_MASK: u32 = 0o440;
const EXEC_MASK: u32 = 0o110;
const SETGID: u32 = 0o2000;

/// The pod's `fsGroup` and whether only a root mismatch triggers the change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsGroup {
    /// The group id.
    pub gid: u32,
    /// `fsGroupChangePolicy: OnRootMismatch`.
    pub on_root_mismatch: bool,
}

/// The pod's `fsGroup`, if it sets one.
pub fn fs_group(pod: &Pod) -> Option<FsGroup> {
    let security = pod.spec.as_ref()?.security_context.as_ref()?;
    let gid = u32::try_from(security.fs_group?).ok()?;
    Some(FsGroup {
        gid,
        on_root_mismatch: security.fs_group_change_policy.as_deref() == Some("OnRootMismatch"),
    })
}

fn mask(read_only: bool, dir: bool) -> u32 {
    let base = if read_only { RO_MASK } else { RW_MASK };
    if dir { base | SETGID | EXEC_MASK } else { base }
}

/// Whether the volume root already has `gid`, setgid and the permission bits.
fn root_matches(root: &Path, gid: u32, read_only: bool) -> bool {
    std::fs::metadata(root).is_ok_and(|m| {
        let want = mask(read_only, true);
        m.gid() == gid && m.permissions().mode() & want == want
    })
}

/// Gives every file under `root` (symlinks themselves, never their targets) the group `group`
/// and kubelet's permission bits.
pub fn set_volume_ownership(root: &Path, group: FsGroup, read_only: bool) -> std::io::Result<()> {
    if group.on_root_mismatch && root_matches(root, group.gid, read_only) {
        return Ok(());
    }
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path)?;
        std::os::unix::fs::lchown(&path, None, Some(group.gid))?;
        if meta.file_type().is_symlink() {
            continue;
        }
        let dir = meta.is_dir();
        let mode = meta.permissions().mode() & 0o7777;
        std::fs::set_permissions(
            &path,
            PermissionsExt::from_mode(mode | mask(read_only, dir)),
        )?;
        if dir {
            for entry in std::fs::read_dir(&path)? {
                pending.push(entry?.path());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    fn gid(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().gid()
    }

    #[test]
    fn writable_volumes_get_the_group_rw_bits_and_setgid_directories() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("vol");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/f"), "x").unwrap();
        std::fs::set_permissions(root.join("sub/f"), PermissionsExt::from_mode(0o600)).unwrap();
        std::fs::set_permissions(root.join("sub"), PermissionsExt::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
        let passwd_gid = gid(Path::new("/etc/passwd"));
        let group = FsGroup {
            gid: 65532,
            on_root_mismatch: false,
        };
        set_volume_ownership(&root, group, false).unwrap();
        assert_eq!(gid(&root.join("sub/f")), 65532);
        assert_eq!(mode(&root.join("sub/f")), 0o660);
        assert_eq!(mode(&root.join("sub")), 0o2770);
        assert_eq!(gid(&root.join("link")), 65532, "the link itself");
        assert_eq!(
            gid(Path::new("/etc/passwd")),
            passwd_gid,
            "never the link's target"
        );
    }

    #[test]
    fn read_only_volumes_get_group_read_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "jwt").unwrap();
        std::fs::set_permissions(dir.path().join("token"), PermissionsExt::from_mode(0o600))
            .unwrap();
        let group = FsGroup {
            gid: 4242,
            on_root_mismatch: false,
        };
        set_volume_ownership(dir.path(), group, true).unwrap();
        assert_eq!(mode(&dir.path().join("token")), 0o640);
        assert_eq!(gid(&dir.path().join("token")), 4242);
    }

    #[test]
    fn on_root_mismatch_skips_volumes_whose_root_already_matches() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("f"), "x").unwrap();
        std::os::unix::fs::chown(root, None, Some(777)).unwrap();
        std::fs::set_permissions(root, PermissionsExt::from_mode(0o2770)).unwrap();
        let group = FsGroup {
            gid: 777,
            on_root_mismatch: true,
        };
        set_volume_ownership(root, group, false).unwrap();
        assert_ne!(gid(&root.join("f")), 777, "walk skipped: the root matched");
        let other = FsGroup {
            gid: 778,
            on_root_mismatch: true,
        };
        set_volume_ownership(root, other, false).unwrap();
        assert_eq!(gid(&root.join("f")), 778, "a mismatching root is walked");
    }

    #[test]
    fn fs_group_is_read_from_the_pod_security_context() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [], "securityContext": {"fsGroup": 65532, "fsGroupChangePolicy": "OnRootMismatch"}}
        }))
        .unwrap();
        assert_eq!(
            fs_group(&pod),
            Some(FsGroup {
                gid: 65532,
                on_root_mismatch: true
            })
        );
    }
}
