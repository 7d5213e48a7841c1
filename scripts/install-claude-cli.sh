#!/usr/bin/env bash
# Installs the Claude Code CLI (npm package @anthropic-ai/claude-code, pinned) into a cache
# directory and prints the path of a runnable `claude` binary on stdout (nothing else goes
# to stdout; progress goes to stderr).
#
#   CLAUDE_CLI_CACHE    install prefix (default: $HOME/.cache/claude-agent-mcp/claude-cli)
#   CLAUDE_CLI_VERSION  package version (default: the pinned version below)
#
# Typical use (CI):
#   export CLAUDE_AGENT_MCP_TEST_CLAUDE_CLI="$(bash scripts/install-claude-cli.sh)"
#
# The package's postinstall script does not run under npm versions that require approval
# for install scripts; it is not needed: the platform package
# (@anthropic-ai/claude-code-linux-x64 and friends) ships the native executable, and
# @anthropic-ai/claude-code/bin/claude.exe is a hard link to it. The script tries the
# candidates in order and prints the first one whose `--version` succeeds.
set -euo pipefail

VERSION="${CLAUDE_CLI_VERSION:-2.1.332}"
PREFIX="${CLAUDE_CLI_CACHE:-${HOME:-/tmp}/.cache/claude-agent-mcp/claude-cli}"

log() { printf 'install-claude-cli: %s\n' "$*" >&2; }

if ! command -v npm >/dev/null 2>&1; then
    log "npm is required (install Node.js 18+ and npm)"
    exit 1
fi

# shellcheck source=scripts/npm-pinned.sh
. "$(dirname "${BASH_SOURCE[0]}")/npm-pinned.sh"
npm_install_pinned "$PREFIX" @anthropic-ai/claude-code "$VERSION"

case "$(uname -m)" in
    x86_64 | amd64) arch=x64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) arch="$(uname -m)" ;;
esac
case "$(uname -s)" in
    Linux) os=linux ;;
    Darwin) os=darwin ;;
    *) os="$(uname -s | tr '[:upper:]' '[:lower:]')" ;;
esac

candidates=(
    "$PREFIX/node_modules/@anthropic-ai/claude-code-$os-$arch/claude"
    "$PREFIX/node_modules/@anthropic-ai/claude-code-$os-$arch-musl/claude"
    "$PREFIX/node_modules/@anthropic-ai/claude-code/bin/claude.exe"
    "$PREFIX/node_modules/.bin/claude"
)

for candidate in "${candidates[@]}"; do
    [ -f "$candidate" ] || continue
    [ -x "$candidate" ] || chmod +x "$candidate" 2>/dev/null || true
    if out="$(timeout 30 "$candidate" --version 2>/dev/null </dev/null)"; then
        log "$candidate --version: $out"
        printf '%s\n' "$candidate"
        exit 0
    fi
    log "$candidate did not answer --version"
done

log "no runnable claude binary found under $PREFIX"
exit 1
