#!/usr/bin/env bash
# Prints the path of HAProxy for the load-balancer tests, installing Debian's haproxy when it
# is missing. Typical use (CI):
#   export CLAUDE_AGENT_MCP_TEST_HAPROXY="$(bash scripts/install-haproxy.sh)"
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/install-debian-program.sh" haproxy haproxy
