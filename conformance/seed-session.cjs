// Seeds one session before the conformance suite runs, for scripts/conformance.sh.
//
//   node seed-session.cjs MCP_URL NODE_MODULES_ANCHOR
//
// NODE_MODULES_ANCHOR is the package.json of the cache directory where the pinned suite (and
// with it @modelcontextprotocol/sdk) is installed. Calls `agent_run_task` once over streamable
// HTTP (the Messages API stand-in answers "ok"), then checks that `resources/list` lists the new
// session, so that the suite's `resources-list` scenario checks a real resource rather than an
// empty list. Prints the session id; exits 1 (with the reason on stderr) on any failure.
'use strict';

const { createRequire } = require('module');

const [url, anchor] = process.argv.slice(2);
if (!url || !anchor) {
  console.error('usage: seed-session.cjs MCP_URL NODE_MODULES_ANCHOR');
  process.exit(2);
}
const load = createRequire(anchor);
const { Client } = load('@modelcontextprotocol/sdk/client/index.js');
const { StreamableHTTPClientTransport } = load('@modelcontextprotocol/sdk/client/streamableHttp.js');

async function main() {
  const client = new Client({ name: 'claude-agent-mcp-conformance-seed', version: '1' });
  await client.connect(new StreamableHTTPClientTransport(new URL(url)));
  try {
    const result = await client.callTool({
      name: 'agent_run_task',
      arguments: { task: 'Conformance seed session: answer ok.', max_turns: 1 },
    });
    const out = result.structuredContent;
    if (result.isError || !out || out.ok !== true || !out.session_id) {
      throw new Error(`agent_run_task did not succeed: ${JSON.stringify(result).slice(0, 600)}`);
    }
    const listed = await client.listResources();
    const uri = `session://${out.session_id}`;
    if (!listed.resources.some((r) => r.uri === uri)) {
      throw new Error(`resources/list does not list ${uri}: ${JSON.stringify(listed).slice(0, 600)}`);
    }
    console.log(out.session_id);
  } finally {
    await client.close();
  }
}

main().catch((e) => {
  console.error(`seed-session: ${e && e.stack ? e.stack : e}`);
  process.exit(1);
});
