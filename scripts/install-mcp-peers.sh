#!/usr/bin/env bash
# Installs the real MCP servers that the federation tests talk to (currently the reference
# server @modelcontextprotocol/server-everything, pinned) into a cache directory and prints
# the command that runs it over stdio on stdout (nothing else goes to stdout; progress goes
# to stderr).
#
#   MCP_PEERS_CACHE             install prefix (default: $HOME/.cache/claude-agent-mcp/mcp-peers)
#   MCP_EVERYTHING_VERSION      package version (default: the pinned version below)
#
# Typical use (CI):
#   export CLAUDE_AGENT_MCP_TEST_EVERYTHING_SERVER="$(bash scripts/install-mcp-peers.sh)"
#   cargo test -p agent-federation
#
# The printed command is `node <prefix>/node_modules/@modelcontextprotocol/server-everything/dist/index.js stdio`.
# The test splits it on whitespace, so keep the cache path free of spaces (or set the
# variable to a JSON array of the command and its arguments instead).
# Requires Node.js 18+ and npm. The script checks that the installed server answers an MCP
# `initialize` over stdio before printing the command.
set -euo pipefail

VERSION="${MCP_EVERYTHING_VERSION:-2026.8.31}"
PREFIX="${MCP_PEERS_CACHE:-${HOME:-/tmp}/.cache/claude-agent-mcp/mcp-peers}"
PACKAGE="@modelcontextprotocol/server-everything"

log() { printf 'install-mcp-peers: %s\n' "$*" >&2; }

for tool in node npm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        log "$tool is required (install Node.js 18+ and npm)"
        exit 1
    fi
done

case "$PREFIX" in
    *[[:space:]]*)
        log "warning: '$PREFIX' contains whitespace; the printed command cannot be split on whitespace"
        ;;
esac

# shellcheck source=scripts/npm-pinned.sh
. "$(dirname "${BASH_SOURCE[0]}")/npm-pinned.sh"
npm_install_pinned "$PREFIX" "$PACKAGE" "$VERSION"

ENTRY="$PREFIX/node_modules/$PACKAGE/dist/index.js"
if [ ! -f "$ENTRY" ]; then
    log "entry point not found: $ENTRY"
    exit 1
fi

# Smoke test: send `initialize` on stdin and expect a JSON-RPC result on stdout.
INIT='{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"install-mcp-peers","version":"1"}}}'
if command -v timeout >/dev/null 2>&1; then
    answer="$( (printf '%s\n' "$INIT"; sleep 3) | timeout 20 node "$ENTRY" stdio 2>/dev/null | head -n 1 || true)"
else
    answer="$( (printf '%s\n' "$INIT"; sleep 3) | node "$ENTRY" stdio 2>/dev/null | head -n 1 || true)"
fi
case "$answer" in
    *'"result"'*'"serverInfo"'*) log "$PACKAGE answers initialize over stdio" ;;
    *)
        log "$PACKAGE did not answer initialize over stdio (got: ${answer:-nothing})"
        exit 1
        ;;
esac

printf 'node %s stdio\n' "$ENTRY"
