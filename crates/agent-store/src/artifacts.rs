//! Artifacts (`docs/reference/sessions.md#10-artifacts`): what both stores do before and after
//! keeping one (the size limit, the id, the content hash, the reference answered), and, for
//! SQLite, the safe file name and the write of `<artifact_root>/<session_id>/<artifact_id>-<safe_name>`.

use std::path::{Path, PathBuf};

use agent_core::ids::new_artifact_id;
use agent_core::{ArtifactRef, NewArtifact};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// An artifact accepted for keeping: its size within the limit, its new id and its hash.
pub(crate) struct Accepted {
    pub size: u64,
    pub artifact_id: String,
    pub sha256: String,
}

/// Refuses a body larger than `max` (`Artifact exceeds max size: <size> > <max>`); otherwise
/// gives the artifact its id and hashes its body.
pub(crate) fn accept(artifact: &NewArtifact<'_>, max: u64) -> Result<Accepted> {
    let size = artifact.body.len() as u64;
    if size > max {
        return Err(Error::ArtifactTooLarge { size, max });
    }
    Ok(Accepted {
        size,
        artifact_id: new_artifact_id(),
        sha256: sha256_hex(artifact.body),
    })
}

/// The reference a kept artifact is answered with.
pub(crate) fn reference(artifact: &NewArtifact<'_>, artifact_id: String) -> ArtifactRef {
    ArtifactRef {
        artifact_id,
        artifact_type: artifact.artifact_type.to_owned(),
        logical_name: artifact.logical_name.to_owned(),
        mime_type: artifact.mime_type.to_owned(),
    }
}

/// The logical name with every `/` replaced by `_`, then every `..` replaced by `_`.
pub(crate) fn safe_name(logical_name: &str) -> String {
    logical_name.replace('/', "_").replace("..", "_")
}

/// Lowercase hex SHA-256 of `body`.
pub(crate) fn sha256_hex(body: &[u8]) -> String {
    format!("{:x}", Sha256::digest(body))
}

/// Creates the session directory (recursively) and writes the body; returns the file path.
pub(crate) async fn write_file(
    root: &Path,
    session_id: &str,
    artifact_id: &str,
    logical_name: &str,
    body: &[u8],
) -> Result<PathBuf> {
    let dir = root.join(session_id);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|source| Error::ArtifactIo {
            path: dir.clone(),
            source,
        })?;
    let path = dir.join(format!("{artifact_id}-{}", safe_name(logical_name)));
    tokio::fs::write(&path, body)
        .await
        .map_err(|source| Error::ArtifactIo {
            path: path.clone(),
            source,
        })?;
    Ok(path)
}

/// Reads an artifact body back: at most `limit` bytes (the limit every artifact was written
/// under); a file that grew past it on disk is an error, not an unbounded read.
pub(crate) async fn read_file(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let file = tokio::fs::File::open(path).await?;
    let mut body = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut body)
        .await?;
    if body.len() as u64 > limit {
        return Err(std::io::Error::other(format!(
            "the file is larger than the artifact limit of {limit} bytes"
        )));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_name_follows_the_reference() {
        assert_eq!(safe_name("output.txt"), "output.txt");
        assert_eq!(safe_name("a/../b"), "a___b");
        assert_eq!(safe_name("../../etc/passwd"), "____etc_passwd");
        assert_eq!(safe_name("x..y"), "x_y");
    }

    #[test]
    fn sha256_is_lowercase_hex() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
