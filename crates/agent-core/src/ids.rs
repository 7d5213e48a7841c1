//! Identifier construction (`docs/reference/sessions.md#1-identifiers`): `sess_`/`art_` + 16 hex
//! digits of a UUIDv4, and lock owner tokens per workflow.

use crate::model::Workflow;

fn hex_prefix(len: usize) -> String {
    let simple = uuid::Uuid::new_v4().simple().to_string();
    simple[..len].to_owned()
}

/// A new session id, e.g. `sess_4f1c2a9b0d3e5f67`.
pub fn new_session_id() -> String {
    format!("sess_{}", hex_prefix(16))
}

/// A new artifact id, e.g. `art_4f1c2a9b0d3e5f67`.
pub fn new_artifact_id() -> String {
    format!("art_{}", hex_prefix(16))
}

/// A lock owner token: `exec_`, `cont_` or `ver_` followed by 8 hex digits.
pub fn new_lock_owner(workflow: Workflow) -> String {
    let prefix = match workflow {
        Workflow::RunTask => "exec",
        Workflow::ContinueSession => "cont",
        Workflow::VerifyTask => "ver",
        Workflow::CancelSession => "cncl",
    };
    format!("{prefix}_{}", hex_prefix(8))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_hex(s: &str) -> bool {
        s.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    }

    #[test]
    fn ids_have_the_reference_shape() {
        let s = new_session_id();
        assert_eq!(s.len(), 21);
        assert!(s.starts_with("sess_") && is_hex(&s[5..]));
        let a = new_artifact_id();
        assert_eq!(a.len(), 20);
        assert!(a.starts_with("art_") && is_hex(&a[4..]));
        assert!(new_lock_owner(Workflow::RunTask).starts_with("exec_"));
        assert!(new_lock_owner(Workflow::ContinueSession).starts_with("cont_"));
        assert_eq!(new_lock_owner(Workflow::VerifyTask).len(), 12);
        assert_ne!(new_session_id(), new_session_id());
    }
}
