// Summarises one scenario's checks.json (written by the conformance CLI's `-o DIR`), for
// scripts/conformance.sh.
//
//   node checks-summary.cjs CHECKS_JSON
//
// Prints one tab-separated line: STATUS, SUCCESS count, FAILURE count, WARNING count, and the
// first failure or warning message (one line, at most 200 characters). STATUS is `pass` when
// there is at least one check and none is a FAILURE or WARNING (the suite's own rule for its
// baseline file), `fail` otherwise.
'use strict';

const fs = require('fs');

const file = process.argv[2];
let checks;
try {
  checks = JSON.parse(fs.readFileSync(file, 'utf8'));
  if (!Array.isArray(checks)) throw new Error('checks.json is not an array');
} catch (e) {
  console.log(['fail', 0, 0, 0, `no readable results: ${e.message}`].join('\t'));
  process.exit(0);
}

const count = (status) => checks.filter((c) => c.status === status).length;
const success = count('SUCCESS');
const failure = count('FAILURE');
const warning = count('WARNING');
const bad = checks.find((c) => c.status === 'FAILURE' || c.status === 'WARNING');
let message = '';
if (bad) {
  message = `${bad.id}: ${bad.errorMessage || bad.description || bad.status}`;
} else if (checks.length === 0) {
  message = 'the scenario reported no checks';
}
message = message.replace(/\s+/g, ' ').trim();
if (message.length > 200) message = `${message.slice(0, 197)}...`;
const status = checks.length > 0 && failure === 0 && warning === 0 ? 'pass' : 'fail';
console.log([status, success, failure, warning, message].join('\t'));
