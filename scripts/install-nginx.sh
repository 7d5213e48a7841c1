#!/usr/bin/env bash
# Prints the path of nginx for the load-balancer tests, installing Debian's nginx-light when it
# is missing. Typical use (CI):
#   export CLAUDE_AGENT_MCP_TEST_NGINX="$(bash scripts/install-nginx.sh)"
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/install-debian-program.sh" nginx nginx-light
