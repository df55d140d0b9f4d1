//! The data directory: created owner-only, with the secrets Ferry generates for itself.

use std::path::Path;

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use super::CoreError;
use crate::config::Secret;

/// Creates the data directory if needed. A new directory is owner-only (0700): it holds the
/// database, every object and the store's secret.
pub fn ensure(path: &Path) -> Result<(), CoreError> {
    let err = |source| CoreError::DataDir { path: path.display().to_string(), source };
    if path.is_dir() {
        #[cfg(unix)]
        if let Ok(meta) = std::fs::metadata(path)
            && std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o077 != 0
        {
            tracing::warn!(
                dir = %path.display(),
                "the data directory is readable by other users; it holds the database and every object: chmod 700 it"
            );
        }
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path).map_err(err)
}

/// The embedded store's secret, made once and kept (owner-only) in the data directory.
pub fn load_or_create_secret(data_dir: &Path) -> Result<Secret, CoreError> {
    let path = data_dir.join(".ferry-secret");
    let err = |source| CoreError::DataDir { path: path.display().to_string(), source };
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(Secret::new(text.trim())),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    let secret = hex::encode(bytes);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(mut file) => std::io::Write::write_all(&mut file, secret.as_bytes()).map_err(err)?,
        // Another instance on the same directory won the race: use its secret.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return load_or_create_secret(data_dir);
        }
        Err(e) => return Err(err(e)),
    }
    Ok(Secret::new(secret))
}

/// A purpose-bound key derived from another secret, so one secret can serve several uses.
pub fn derive_secret(base: &Secret, purpose: &[u8]) -> Secret {
    let mut mac = Hmac::<Sha256>::new_from_slice(base.expose().as_bytes()).expect("any key length");
    mac.update(purpose);
    Secret::new(hex::encode(mac.finalize().into_bytes()))
}
