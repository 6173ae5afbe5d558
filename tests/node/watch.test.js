'use strict';
// SessionService.WatchSessions seen from Node @grpc/grpc-js, with stubs
// loaded by @grpc/proto-loader from the repository's .proto files
// (NORN_PROTO_DIR; google/protobuf well-known types come with protobufjs):
// snapshot (send_initial), initial_end, then the deltas of two sessions
// written by unary calls, in consecutive revision order; SIGTERM ends the
// open watch with UNAVAILABLE and nornd exits 0.
//
// Run: cd tests/node && NORND=/path/to/nornd NORN_PROTO_DIR=../../proto node --test watch.test.js

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const { Nornd } = require('./nornd');

const PROTO_DIR = process.env.NORN_PROTO_DIR || path.join(__dirname, '..', '..', 'proto');
const DEADLINE_MS = 5000;
const deadline = () => ({ deadline: Date.now() + DEADLINE_MS });

let nornd;
let client;

function loadSessionService() {
  const def = protoLoader.loadSync('norn/v1/session_service.proto', {
    includeDirs: [PROTO_DIR],
    keepCase: true, // field names as in the .proto
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true, // sets `event` to the name of the oneof arm present
  });
  return grpc.loadPackageDefinition(def).norn.v1.SessionService;
}

function unary(method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, deadline(), (err, resp) => (err ? reject(err) : resolve(resp)));
  });
}

// google.protobuf.Struct comes from protobufjs's bundled well-known types,
// whose fields are camelCase even with keepCase (stringValue, not string_value).
function step(tag, i) {
  return {
    tool_use_id: `${tag}-${i}`,
    tool_name: 'read_file',
    tool_input: { fields: { path: { stringValue: `/data/${tag}/${i}` } } },
    result_text: `contents of ${tag}/${i}`,
    result_status: 'RESULT_STATUS_SUCCESS',
  };
}

// Collects a server stream's messages; waitFor(pred) resolves once a
// message satisfying pred has arrived (or rejects when the stream ends).
class Collector {
  constructor(call) {
    this.call = call;
    this.messages = [];
    this.waiters = [];
    this.status = null;
    this.error = null;
    this.ended = new Promise((resolve) => {
      call.on('data', (m) => {
        this.messages.push(m);
        this.poke();
      });
      call.on('error', (err) => {
        this.error = err;
      });
      call.on('status', (s) => {
        this.status = s;
        this.poke();
        resolve(s);
      });
    });
  }

  poke() {
    for (const w of [...this.waiters]) {
      const hit = this.messages.find(w.pred);
      if (hit || this.status) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        clearTimeout(w.timer);
        if (hit) w.resolve(hit);
        else w.reject(new Error(`stream ended (${JSON.stringify(this.status)}) while waiting`));
      }
    }
  }

  waitFor(pred, timeoutMs = DEADLINE_MS) {
    return new Promise((resolve, reject) => {
      const w = { pred, resolve, reject };
      w.timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`no matching message within ${timeoutMs} ms; got ${JSON.stringify(this.messages)}`));
      }, timeoutMs);
      this.waiters.push(w);
      this.poke();
    });
  }
}

before(async () => {
  const SessionService = loadSessionService();
  nornd = new Nornd();
  await nornd.start();
  client = new SessionService(nornd.target, grpc.credentials.createInsecure());
});

after(async () => {
  if (client) client.close();
  if (nornd) await nornd.close();
});

test('snapshot, initial_end, then consecutive deltas for two sessions; SIGTERM ends the watch', async () => {
  // One session before the watch, so the snapshot is not empty.
  const pre = await unary('OpenSession', { session_id: 'node-pre', agent_name: 'node-agent' });
  assert.equal(pre.session.revision, 1);

  const watch = new Collector(client.WatchSessions({ send_initial: true, include_steps: true }));
  const end = await watch.waitFor((m) => m.event === 'initial_end');
  const seam = end.initial_end.revision;
  assert.equal(seam, 1);
  const initial = watch.messages.filter((m) => m.event === 'initial');
  assert.deepEqual(initial.map((m) => m.initial.session_id), ['node-pre']);
  assert.ok(initial[0].initial.revision <= seam);
  assert.equal(watch.messages.indexOf(end), initial.length, 'initial_end follows the snapshot');

  // Two sessions, interleaved, by unary calls: revisions 2..9.
  const expected = [];
  for (const sid of ['node-1', 'node-2']) {
    const r = await unary('OpenSession', { session_id: sid, agent_name: 'node-agent', model: 'm' });
    assert.equal(r.resumed, false);
    expected.push([sid, 'DELTA_KIND_CREATED', 0]);
  }
  for (let round = 0; round < 2; round++) {
    for (const sid of ['node-1', 'node-2']) {
      const steps = [step(sid, 2 * round), step(sid, 2 * round + 1)];
      const r = await unary('RecordSteps', { session_id: sid, steps });
      assert.equal(r.verdicts.length, 2);
      expected.push([sid, 'DELTA_KIND_STEP_ADDED', 2]);
    }
  }
  for (const sid of ['node-1', 'node-2']) {
    await unary('CompleteSession', { session_id: sid, final_text: 'done' });
    expected.push([sid, 'DELTA_KIND_COMPLETED', 0]);
  }
  const last = seam + expected.length;

  await watch.waitFor((m) => m.event === 'delta' && m.delta.revision >= last);
  const deltas = watch.messages.slice(initial.length + 1);
  assert.ok(deltas.every((m) => m.event === 'delta'), JSON.stringify(deltas.map((m) => m.event)));
  assert.deepEqual(deltas.map((m) => m.delta.revision),
    Array.from({ length: expected.length }, (_, i) => seam + 1 + i),
    'deltas start at initial_end + 1 and are consecutive');
  assert.deepEqual(deltas.map((m) => [m.delta.session.session_id, m.delta.kind, m.delta.steps.length]),
    expected);
  for (const m of deltas) assert.equal(m.delta.session.revision, m.delta.revision);

  // The steps the watcher saw are the ones recorded, numbered 1..4 per session.
  for (const sid of ['node-1', 'node-2']) {
    const steps = deltas.filter((m) => m.delta.session.session_id === sid).flatMap((m) => m.delta.steps);
    assert.deepEqual(steps.map((s) => [s.step_number, s.tool_use_id, s.result_text]),
      [0, 1, 2, 3].map((i) => [i + 1, `${sid}-${i}`, `contents of ${sid}/${i}`]));
    assert.deepEqual(steps[0].tool_input.fields.path, { stringValue: `/data/${sid}/0`, kind: 'stringValue' });
    const done = deltas.filter((m) => m.delta.session.session_id === sid).at(-1).delta.session;
    assert.equal(done.status, 'SESSION_STATUS_COMPLETED');
    assert.equal(done.total_steps, 4);
  }

  // Graceful stop with the watch open: UNAVAILABLE, exit 0.
  const exit = await nornd.terminate();
  assert.deepEqual(exit, { code: 0, signal: null }, nornd.logText());
  let timer;
  const status = await Promise.race([
    watch.ended,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error('watch still open after SIGTERM')), DEADLINE_MS);
    }),
  ]).finally(() => clearTimeout(timer));
  assert.equal(status.code, grpc.status.UNAVAILABLE, JSON.stringify(status));
  assert.equal(watch.error && watch.error.code, grpc.status.UNAVAILABLE);
});
