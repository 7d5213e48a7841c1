//! The in-memory [`TaskStore`](agent_core::TaskStore) lives in `agent-core` (the server also
//! uses it for stores without shared task state); re-exported here beside the other stand-ins.

pub use agent_core::mcp_tasks::memory::MemTaskStore;
