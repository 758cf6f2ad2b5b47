// Stand-in for the seed's normalize-hrv service in its own stack (Node.js with the npm
// packages nats, pg and prom-client), so soakwatch's verdicts are exercised on what such a
// service really emits: prom-client's exposition (a labelled counter and histogram are
// declared with no samples until the first event), nats.js pull-consumer behaviour and pg
// upserts. It mirrors src/standin.rs (the Rust stand-in): it reads the service's .env at
// start, writes the seed's log lines, binds the existing durable (never creates it), upserts
// valid events into the replica's table and acks them, sends invalid events to the DLQ
// subject at once, and naks database failures until the consumer's max deliveries, then
// dead-letters them.
//
// Plumbing comes from the process environment (set by tests/e2e/common.rs):
//   NATS_URL, DATABASE_URL, HRV_CORE_STREAM, HRV_LEGACY_STREAM, HRV_DURABLE, HRV_TABLE,
//   HRV_SUBJECT, HRV_DLQ_SUBJECT, SERVICE_ENV_FILE, SERVICE_LOG, LISTEN (host:port).
'use strict';

const fs = require('fs');
const http = require('http');
const { connect, headers } = require('nats');
const { Pool } = require('pg');
const client = require('prom-client');

const FETCH_BATCH = 50;
const FETCH_EXPIRES_MS = 1000;
const NAK_DELAY_MS = 2000;
const BIND_RETRY_MS = 1000;
const DEFAULT_ACK_WAIT_MS = 30000;

function required(name) {
  const v = process.env[name];
  if (!v) {
    process.stderr.write(`node-standin: ${name} is not set\n`);
    process.exit(2);
  }
  return v;
}

const env = {
  natsUrl: required('NATS_URL'),
  databaseUrl: required('DATABASE_URL'),
  coreStream: required('HRV_CORE_STREAM'),
  legacyStream: required('HRV_LEGACY_STREAM'),
  durable: required('HRV_DURABLE'),
  table: required('HRV_TABLE'),
  subject: required('HRV_SUBJECT'),
  dlqSubject: required('HRV_DLQ_SUBJECT'),
  envFile: required('SERVICE_ENV_FILE'),
  logFile: required('SERVICE_LOG'),
  listen: required('LISTEN'),
};

// --- log file, secrets redacted -----------------------------------------------------------

const secrets = [env.databaseUrl];
try {
  const pw = decodeURIComponent(new URL(env.databaseUrl).password || '');
  if (pw.length >= 4) secrets.push(pw);
} catch (_) {
  // Not a URL: the whole string is redacted anyway.
}

const logFd = fs.openSync(env.logFile, 'a');
function log(message) {
  let m = String(message).replace(/[\r\n]+/g, ' ');
  for (const s of secrets) m = m.split(s).join('***');
  fs.writeSync(logFd, `${new Date().toISOString()} ${m}\n`);
}

// --- the service's .env --------------------------------------------------------------------

function parseEnv(text) {
  const vars = {};
  for (let line of text.split('\n')) {
    line = line.trim();
    if (!line || line.startsWith('#')) continue;
    if (line.startsWith('export ')) line = line.slice(7);
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    const key = line.slice(0, eq).trim();
    let value = line.slice(eq + 1).trim();
    const q = value[0];
    if (q === '"' || q === "'") {
      const end = value.indexOf(q, 1);
      value = end > 0 ? value.slice(1, end) : value.slice(1);
    } else {
      const hash = value.search(/\s#/);
      if (hash >= 0) value = value.slice(0, hash).trimEnd();
    }
    vars[key] = value;
  }
  return vars;
}

const serviceEnv = parseEnv(fs.readFileSync(env.envFile, 'utf8'));
const modeRaw = serviceEnv.EVENT_STREAM_MODE;
const mode = (modeRaw || '').trim().toLowerCase() === 'multi' ? 'multi' : 'single';
const ackWaitMs = Number.parseInt(serviceEnv.NORMALIZE_HRV_ACK_WAIT_MS || `${DEFAULT_ACK_WAIT_MS}`, 10);

// --- metrics (prom-client, as the seed) ----------------------------------------------------

const register = new client.Registry();
client.collectDefaultMetrics({ register });
const messages = new client.Counter({
  name: 'normalize_hrv_messages_total',
  help: 'Total number of HRV messages processed by normalize service',
  labelNames: ['result', 'subject', 'stream', 'durable'],
  registers: [register],
});
// Labelled by stream only: latency histograms often carry fewer labels than counters.
const duration = new client.Histogram({
  name: 'normalize_hrv_processing_duration_seconds',
  help: 'Time from HRV message receipt to acknowledgement',
  labelNames: ['stream'],
  registers: [register],
});

// --- validation, as src/standin.rs -----------------------------------------------------------

function validate(data) {
  let value;
  try {
    value = JSON.parse(Buffer.from(data).toString('utf8'));
  } catch (e) {
    return { error: `invalid JSON: ${e.message}` };
  }
  const p = value && value.payload;
  if (!p || typeof p !== 'object') return { error: 'payload missing' };
  const userId = typeof p.userId === 'string' ? p.userId.trim() : '';
  if (!userId) return { error: 'userId missing or empty' };
  if (typeof p.date !== 'string') return { error: 'date missing' };
  if (!/^\d{4}-\d{2}-\d{2}$/.test(p.date) || Number.isNaN(Date.parse(`${p.date}T00:00:00Z`))) {
    return { error: `date "${p.date}" is not YYYY-MM-DD` };
  }
  if (typeof p.rMSSD !== 'number') return { error: 'rMSSD missing or not a number' };
  if (!(Number.isFinite(p.rMSSD) && p.rMSSD > 0)) {
    return { error: `rMSSD must be a positive number, got ${p.rMSSD}` };
  }
  const captured = typeof p.capturedAt === 'string' ? new Date(p.capturedAt) : null;
  return {
    row: {
      userId,
      date: p.date,
      rmssd: p.rMSSD,
      lnRmssd: Math.log(p.rMSSD),
      capturedAt: captured && !Number.isNaN(captured.getTime()) ? captured.toISOString().replace('T', ' ').replace('Z', '') : null,
    },
  };
}

function quoteIdent(name) {
  return `"${name.replace(/"/g, '""')}"`;
}

const upsertSql = `INSERT INTO ${quoteIdent(env.table)} ("userId", date, rmssd, "lnRmssd", "capturedAt") VALUES ($1, $2, $3, $4, $5)
ON CONFLICT ("userId", date) DO UPDATE SET rmssd = EXCLUDED.rmssd, "lnRmssd" = EXCLUDED."lnRmssd", "capturedAt" = EXCLUDED."capturedAt", "updatedAt" = (now() AT TIME ZONE 'utc')`;

// --- processing ----------------------------------------------------------------------------

const state = { paused: false, stopping: false, boundStream: null };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function bind(js) {
  const stream = mode === 'multi' ? env.coreStream : env.legacyStream;
  for (;;) {
    if (state.stopping) return null;
    try {
      const consumer = await js.consumers.get(stream, env.durable);
      const info = await consumer.info();
      return { consumer, info, stream };
    } catch (e) {
      log(`[normalize] Failed to bind HRV consumer ${env.durable} on ${stream}: ${e.message} (retrying in ${BIND_RETRY_MS / 1000}s)`);
      await sleep(BIND_RETRY_MS);
    }
  }
}

async function deadLetter(js, m, reason, labels) {
  const h = headers();
  h.set('X-DLQ-Reason', reason.replace(/[\r\n]+/g, ' '));
  h.set('X-DLQ-Original-Subject', m.subject);
  h.set('X-DLQ-Stream-Seq', String(m.info.streamSequence));
  h.set('X-DLQ-Deliveries', String(m.info.redeliveryCount));
  try {
    await js.publish(env.dlqSubject, m.data, { headers: h });
  } catch (e) {
    log(`[normalize-hrv] Failed to publish to DLQ ${env.dlqSubject} (${reason}), will retry: ${e.message}`);
    m.nak(NAK_DELAY_MS);
    messages.inc({ ...labels, result: 'retry' });
    return;
  }
  m.ack();
  log(`[normalize-hrv] Message sent to DLQ: ${reason}`);
  messages.inc({ ...labels, result: 'dlq' });
}

async function handle(js, pool, m, stream, maxDeliver) {
  const started = process.hrtime.bigint();
  const labels = { subject: m.subject, stream, durable: env.durable };
  const seq = m.info.streamSequence;
  log(`[normalize] Processing HRV message: ${JSON.stringify({ streamSeq: seq, deliverySeq: m.info.deliverySequence, redeliveries: m.info.redeliveryCount, subject: m.subject })}`);
  const v = validate(m.data);
  if (v.error) {
    await deadLetter(js, m, v.error, labels);
  } else {
    log('[normalize] HRV validation passed, processing data...');
    try {
      const r = v.row;
      await pool.query(upsertSql, [r.userId, r.date, r.rmssd, r.lnRmssd, r.capturedAt]);
      m.ack();
      log(`[normalize] HRV data upserted for date ${r.date}`);
      log('[normalize] HRV data processed successfully');
      messages.inc({ ...labels, result: 'success' });
    } catch (e) {
      if (maxDeliver > 0 && m.info.redeliveryCount >= maxDeliver) {
        await deadLetter(js, m, `database error after ${m.info.redeliveryCount} deliveries: ${e.message}`, labels);
      } else {
        log(`[normalize] Database error processing HRV message (streamSeq ${seq}), will retry in ${NAK_DELAY_MS / 1000}s: ${e.message}`);
        m.nak(NAK_DELAY_MS);
        messages.inc({ ...labels, result: 'retry' });
      }
    }
  }
  duration.observe({ stream }, Number(process.hrtime.bigint() - started) / 1e9);
}

async function processLoop(nc, pool) {
  const js = nc.jetstream();
  const bound = await bind(js);
  if (!bound) return;
  const { consumer, info, stream } = bound;
  state.boundStream = stream;
  const filter = info.config.filter_subject || '(none)';
  const maxDeliver = info.config.max_deliver;
  log(`[normalize] Found existing HRV consumer on ${stream}: ${env.durable}`);
  log(`[normalize] HRV durable pull consumer bound: ${env.durable}, subject: ${filter}, ackWait: ${ackWaitMs}ms, maxDeliver: ${maxDeliver}`);
  log(`[normalize-hrv] DLQ subject prefix: ${env.dlqSubject}`);
  log(`[normalize-hrv] Consumer: ${env.durable}, maxDeliver: ${maxDeliver}, ackWait: ${Math.round(info.config.ack_wait / 1e6)}ms`);
  log('[normalize] Starting HRV message processing loop...');
  while (!state.stopping) {
    if (state.paused) {
      await sleep(200);
      continue;
    }
    try {
      const batch = await consumer.fetch({ max_messages: FETCH_BATCH, expires: FETCH_EXPIRES_MS });
      for await (const m of batch) {
        await handle(js, pool, m, stream, maxDeliver);
      }
    } catch (e) {
      log(`[normalize] Error fetching HRV messages: ${e.message}`);
      await sleep(1000);
    }
  }
  log('[normalize] HRV message processing loop stopped');
}

// --- HTTP ----------------------------------------------------------------------------------

function serve() {
  const [host, port] = [env.listen.slice(0, env.listen.lastIndexOf(':')), Number(env.listen.slice(env.listen.lastIndexOf(':') + 1))];
  const server = http.createServer(async (req, res) => {
    if (req.method === 'GET' && req.url === '/metrics') {
      try {
        const body = await register.metrics();
        res.writeHead(200, { 'Content-Type': register.contentType });
        res.end(body);
      } catch (e) {
        res.writeHead(500);
        res.end(String(e.message));
      }
      return;
    }
    if (req.method === 'POST' && (req.url === '/admin/pause' || req.url === '/admin/resume')) {
      state.paused = req.url === '/admin/pause';
      log(`[standin] admin: ${state.paused ? 'pause (consuming stops)' : 'resume'}`);
    } else if (!(req.method === 'GET' && req.url === '/admin/state')) {
      res.writeHead(404);
      res.end('not found');
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ ok: true, paused: state.paused, mode, bound_stream: state.boundStream, durable: env.durable }));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}

async function main() {
  log(`[event-bus] Stream mode: ${mode} (EVENT_STREAM_MODE=${modeRaw === undefined ? 'undefined' : JSON.stringify(modeRaw)})`);
  log(`[normalize-service] Stream candidates: ${mode === 'multi' ? `${env.coreStream}, ${env.legacyStream}` : env.legacyStream}`);
  const server = await serve();
  const addr = server.address();
  log(`[normalize-service] Metrics server listening on http://${addr.address}:${addr.port}/metrics`);
  const pool = new Pool({ connectionString: env.databaseUrl, max: 4, connectionTimeoutMillis: 3000 });
  pool.on('error', (e) => log(`[normalize] Database pool error: ${e.message}`));
  const nc = await connect({ servers: env.natsUrl, name: `soakwatch-node-standin-${env.durable}`, waitOnFirstConnect: true, maxReconnectAttempts: -1 });
  log('[nats] Connected to NATS');
  (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') log('[nats] Disconnected from NATS, reconnecting...');
      if (s.type === 'reconnect') log('[nats] Reconnected to NATS');
    }
  })();
  const loop = processLoop(nc, pool);
  const stop = async () => {
    if (state.stopping) return;
    state.stopping = true;
    await loop;
    await nc.drain().catch(() => {});
    await pool.end().catch(() => {});
    server.close();
    log('[normalize-service] Shutdown complete');
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((e) => {
  log(`[normalize-service] Fatal: ${e.message}`);
  process.stderr.write(`node-standin: ${e.message}\n`);
  process.exit(1);
});
