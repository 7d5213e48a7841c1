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

/// A new MCP task id: a hyphenated UUIDv4 (36 characters), unguessable, so that knowing a task
/// id is what lets a client read or cancel it through any node.
pub fn new_task_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A serving process's node id, made once at startup, e.g. `node_4f1c2a9b0d3e5f67`: lock owner
/// tokens carry it, so an operator can tell which process holds a session.
pub fn new_node_id() -> String {
    format!("node_{}", hex_prefix(16))
}

/// A lock owner token, new for every execution: `exec_`, `cont_`, `ver_` or `fork_` followed by 8 hex
/// digits, then `@` and the node id of the process that runs it, e.g.
/// `exec_4f1c2a9b@node_0d3e5f674f1c2a9b`.
pub fn new_lock_owner(workflow: Workflow, node_id: &str) -> String {
    let prefix = match workflow {
        Workflow::RunTask => "exec",
        Workflow::ContinueSession => "cont",
        Workflow::VerifyTask => "ver",
        Workflow::CancelSession => "cncl",
        Workflow::ForkSession => "fork",
    };
    format!("{prefix}_{}@{node_id}", hex_prefix(8))
}

/// The workflow of the execution that holds a lock, read from its owner token
/// ([`new_lock_owner`]); `None` for a token of another form.
pub fn workflow_of_lock_owner(owner: &str) -> Option<Workflow> {
    match owner.split_once('_')?.0 {
        "exec" => Some(Workflow::RunTask),
        "cont" => Some(Workflow::ContinueSession),
        "ver" => Some(Workflow::VerifyTask),
        "fork" => Some(Workflow::ForkSession),
        _ => None,
    }
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
        let node = new_node_id();
        assert_eq!(node.len(), 21);
        assert!(node.starts_with("node_") && is_hex(&node[5..]));
        assert!(new_lock_owner(Workflow::RunTask, &node).starts_with("exec_"));
        assert!(new_lock_owner(Workflow::ContinueSession, &node).starts_with("cont_"));
        let owner = new_lock_owner(Workflow::VerifyTask, &node);
        assert_eq!(owner.len(), 12 + 1 + 21);
        assert_eq!(owner.split_once('@').map(|(_, n)| n), Some(node.as_str()));
        assert_ne!(new_session_id(), new_session_id());
    }

    #[test]
    fn the_workflow_of_a_lock_owner_is_read_back_from_its_token() {
        let node = new_node_id();
        for workflow in [
            Workflow::RunTask,
            Workflow::ContinueSession,
            Workflow::VerifyTask,
            Workflow::ForkSession,
        ] {
            let owner = new_lock_owner(workflow, &node);
            assert_eq!(workflow_of_lock_owner(&owner), Some(workflow), "{owner}");
        }
        assert_eq!(workflow_of_lock_owner("someone-else"), None);
        assert_eq!(workflow_of_lock_owner("cncl_0000@node"), None);
    }
}
