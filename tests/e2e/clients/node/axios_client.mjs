// The seeds' Electron main-process request, as a command: Node's https.Agent with the CA,
// the client certificate and its key, and axios. Prints one JSON line for the test.
//
//   node axios_client.mjs URL --ca ca.crt [--cert client.crt --key client.key]
//
// Without --cert/--key the agent only verifies the server ("只校验ca时，注释这两行").
import https from 'https';
import fs from 'fs';
import axios from 'axios';

function parseArgs(argv) {
  const out = { url: null, ca: null, cert: null, key: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--ca' || a === '--cert' || a === '--key') {
      out[a.slice(2)] = argv[++i];
    } else {
      out.url = a;
    }
  }
  if (!out.url || !out.ca) {
    throw new Error('usage: node axios_client.mjs URL --ca FILE [--cert FILE --key FILE]');
  }
  return out;
}

const args = parseArgs(process.argv.slice(2));

const caCert = fs.readFileSync(args.ca);
const agentOptions = { ca: caCert, rejectUnauthorized: true };
if (args.cert) {
  agentOptions.cert = fs.readFileSync(args.cert);
  agentOptions.key = fs.readFileSync(args.key);
}
const agent = new https.Agent(agentOptions);

const report = { status: null, headers: null, data: null, error: null };
try {
  const response = await axios.get(args.url, { httpsAgent: agent });
  report.status = response.status;
  report.headers = response.headers;
  report.data = response.data;
} catch (err) {
  if (err.response) {
    // axios rejects non-2xx answers; the 400 page is one the test looks at.
    report.status = err.response.status;
    report.headers = err.response.headers;
    report.data = err.response.data;
  } else {
    report.error = { code: err.code ?? null, message: err.message };
  }
}
process.stdout.write(JSON.stringify(report) + '\n');
