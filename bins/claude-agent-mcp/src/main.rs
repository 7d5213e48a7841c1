//! The `claude-agent-mcp` binary: everything lives in the library so that tests reach it.

fn main() -> std::process::ExitCode {
    claude_agent_mcp::main_entry()
}
