// A service's /metrics exactly as Node.js prom-client writes it, for the end-to-end tests
// of counter names (tests/e2e/names.rs): one counter with a `result` label and constant
// labels, process_start_time_seconds from prom-client's default metrics, in the format
// the service chose (prom-client's registry content type: 0.0.4 text or OpenMetrics).
//
//   node counter-exporter.js --port-file F --counter orders_processed_total \
//       --label stream=ORDERS_HOT --count success=743 --count dlq=1 [--format text|openmetrics]
//
// Without --count the counter is declared with no sample (a fresh service).
const http = require('http');
const fs = require('fs');
const client = require('prom-client');

function args(argv) {
  const out = { label: [], count: [], format: 'text' };
  for (let i = 2; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, '').replace('-', '_');
    if (Array.isArray(out[key])) out[key].push(argv[i + 1]);
    else out[key] = argv[i + 1];
  }
  return out;
}

const a = args(process.argv);
const register = new client.Registry();
client.collectDefaultMetrics({ register });
if (a.format === 'openmetrics') register.setContentType(client.Registry.OPENMETRICS_CONTENT_TYPE);
const fixed = Object.fromEntries(a.label.map((kv) => kv.split(/=(.*)/s).slice(0, 2)));
const counter = new client.Counter({
  name: a.counter,
  help: 'Messages processed, by result',
  labelNames: ['result', ...Object.keys(fixed)],
  registers: [register],
});
for (const kv of a.count) {
  const [result, n] = kv.split('=');
  counter.inc({ result, ...fixed }, Number(n));
}
const server = http.createServer(async (req, res) => {
  res.writeHead(200, { 'Content-Type': register.contentType });
  res.end(await register.metrics());
});
server.listen(0, '127.0.0.1', () => {
  fs.writeFileSync(`${a.port_file}.tmp`, String(server.address().port));
  fs.renameSync(`${a.port_file}.tmp`, a.port_file);
});
process.on('SIGTERM', () => process.exit(0));
