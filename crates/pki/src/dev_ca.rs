//! A development CA on disk: `ca.pem`, `ca.key`, `server.pem` (chain) and `server.key` in one
//! directory. An existing CA is reused so that clients keep trusting restarts; the server
//! certificate is issued afresh for the names asked for.

use crate::ca::CertificateAuthority;
use crate::error::{Error, Result};
use jiff::{SignedDuration, Timestamp};
use std::fs;
use std::path::{Path, PathBuf};

/// Validity of a generated development CA.
pub const DEV_CA_VALIDITY: SignedDuration = SignedDuration::from_hours(24 * 365);
/// Validity of a development server certificate.
pub const DEV_SERVER_VALIDITY: SignedDuration = SignedDuration::from_hours(24 * 90);

/// Paths of the files written by [`write_dev_ca`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevCaFiles {
    /// The CA certificate clients should trust.
    pub ca_cert: PathBuf,
    /// The CA key (owner-only permissions).
    pub ca_key: PathBuf,
    /// The server certificate chain.
    pub server_cert: PathBuf,
    /// The server key (owner-only permissions).
    pub server_key: PathBuf,
}

/// Ensures a development CA exists in `dir` and issues a server certificate for `names`.
pub fn write_dev_ca(dir: &Path, common_name: &str, names: &[&str]) -> Result<DevCaFiles> {
    create_dir(dir)?;
    let files = DevCaFiles {
        ca_cert: dir.join("ca.pem"),
        ca_key: dir.join("ca.key"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
    };
    let now = Timestamp::now();
    let ca = match (read(&files.ca_cert), read(&files.ca_key)) {
        (Ok(cert), Ok(key)) => Some(CertificateAuthority::from_pem(&cert, &key)?),
        _ => None,
    };
    let ca = match ca.filter(|ca| ca.not_after() > now + DEV_SERVER_VALIDITY) {
        Some(ca) => ca,
        None => {
            let ca = CertificateAuthority::new_root(common_name, now + DEV_CA_VALIDITY)?;
            write(&files.ca_key, &ca.key_pem(), true)?;
            write(&files.ca_cert, ca.cert_pem(), false)?;
            ca
        }
    };
    let server = ca.issue_server(names, now + DEV_SERVER_VALIDITY)?;
    write(&files.server_key, &server.key_pem, true)?;
    write(&files.server_cert, &server.chain_pem, false)?;
    Ok(files)
}

fn create_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_owned(),
        source,
    })
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })
}

fn write(path: &Path, contents: &str, secret: bool) -> Result<()> {
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    // Write to a temporary file and rename, so a crash never leaves half a key behind.
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, contents).map_err(io)?;
    if secret {
        set_owner_only(&tmp).map_err(io)?;
    }
    fs::rename(&tmp, path).map_err(io)
}

#[cfg(unix)]
fn set_owner_only(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
}

#[cfg(not(unix))]
fn set_owner_only(_path: &Path) -> std::io::Result<()> {
    Ok(())
}
