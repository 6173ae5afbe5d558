'use strict';
// nornd seen from Node @grpc/grpc-js with no .proto files at all: everything
// (service list, descriptors, the client used for calls) comes from server
// reflection via grpc-js-reflection-client.
//
// Run: cd tests/node && NORND=/path/to/nornd node --test reflection.test.js

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const grpc = require('@grpc/grpc-js');
const { GrpcReflection, ReflectionRequestException } = require('grpc-js-reflection-client');
const { Nornd } = require('./nornd');

const NORN_SERVICES = [
  'norn.v1.SessionService',
  'norn.v1.AgentService',
  'norn.v1.SwarmService',
  'norn.v1.AuditService',
  'norn.v1.ConfigService',
  'norn.v1.StatsService',
];
const DEADLINE_MS = 5000;
const deadline = () => ({ deadline: Date.now() + DEADLINE_MS });

let nornd;
const clients = []; // grpc-js clients to close at the end

function reflection(version) {
  const r = new GrpcReflection(nornd.target, grpc.credentials.createInsecure(), {}, version);
  // The library keeps its grpc-js client private and never closes it.
  if (r.client && typeof r.client.close === 'function') clients.push(r.client);
  return r;
}

// Field names as written in the .proto. protobufjs 8 names fields by their
// json_name (sessionId) and keeps the proto name in protoName.
function protoFieldNames(type) {
  return Object.values(type.fields).map((f) => f.protoName || f.name);
}

function fieldByProtoName(type, name) {
  return Object.values(type.fields).find((f) => (f.protoName || f.name) === name);
}

function unaryCall(client, method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, deadline(), (err, resp) => (err ? reject(err) : resolve(resp)));
  });
}

before(async () => {
  nornd = new Nornd();
  await nornd.start();
});

after(async () => {
  for (const c of clients) c.close();
  if (nornd) await nornd.close();
});

test('list services over v1alpha reflection', async () => {
  const services = await reflection('v1alpha').listServices('*', deadline());
  for (const s of [...NORN_SERVICES, 'grpc.health.v1.Health',
    'grpc.reflection.v1alpha.ServerReflection', 'grpc.reflection.v1.ServerReflection']) {
    assert.ok(services.includes(s), `${s} missing from ${JSON.stringify(services)}`);
  }
  assert.equal(new Set(services).size, services.length, 'duplicate service names');
});

test('list services over v1 reflection gives the same list', async () => {
  const v1 = await reflection('v1').listServices('*', deadline());
  const v1alpha = await reflection('v1alpha').listServices('*', deadline());
  assert.deepEqual([...v1].sort(), [...v1alpha].sort());
  assert.ok(v1.includes('norn.v1.StatsService'));
});

test('SessionService descriptor: OpenSession takes norn.v1.OpenSessionRequest', async () => {
  const descriptor = await reflection('v1alpha').getDescriptorBySymbol('norn.v1.SessionService', deadline());
  const root = descriptor.getProtobufJsRoot();
  const service = root.lookupService('norn.v1.SessionService');
  const open = service.methods.OpenSession;
  assert.ok(open, 'OpenSession method');
  open.resolve();
  assert.equal(open.resolvedRequestType.fullName, '.norn.v1.OpenSessionRequest');
  assert.equal(open.resolvedResponseType.fullName, '.norn.v1.OpenSessionResponse');
  const req = root.lookupType('norn.v1.OpenSessionRequest');
  const names = protoFieldNames(req);
  for (const f of ['session_id', 'agent_name', 'system_prompt', 'task']) {
    assert.ok(names.includes(f), `OpenSessionRequest.${f} (fields: ${names})`);
  }
  assert.equal(fieldByProtoName(req, 'session_id').type, 'string');
  // The task field's type (from common.proto, a dependency) resolves too.
  req.resolveAll();
  assert.equal(fieldByProtoName(req, 'task').resolvedType.fullName, '.norn.v1.TaskDefinition');

  // What a grpc-js client built from this descriptor sees (keepCase).
  const pkgDef = descriptor.getPackageDefinition({ keepCase: true });
  const reqDef = pkgDef['norn.v1.OpenSessionRequest'];
  assert.ok(reqDef && reqDef.type, 'package definition has norn.v1.OpenSessionRequest');
  const defNames = reqDef.type.field.map((f) => f.name);
  assert.ok(defNames.includes('session_id'), `fields: ${defNames}`);
  assert.ok(defNames.includes('agent_name'), `fields: ${defNames}`);
  assert.equal(pkgDef['norn.v1.SessionService'].OpenSession.path, '/norn.v1.SessionService/OpenSession');
  const ingest = service.methods.Ingest;
  assert.equal(ingest.requestStream, true);
  assert.equal(ingest.responseStream, true);
});

test('listMethods of SessionService gives grpc-js method definitions', async () => {
  const methods = await reflection('v1alpha').listMethods('norn.v1.SessionService', deadline());
  const byName = Object.fromEntries(methods.map((m) => [m.name, m.definition]));
  for (const m of ['OpenSession', 'BeginStep', 'EndStep', 'RecordSteps', 'Ingest',
    'CompleteSession', 'GetSession', 'ListSessions', 'ListSteps', 'DeleteSession', 'WatchSessions']) {
    assert.ok(byName[m], `${m} missing from ${Object.keys(byName)}`);
  }
  assert.equal(byName.OpenSession.path, '/norn.v1.SessionService/OpenSession');
  assert.equal(byName.OpenSession.requestStream, false);
  assert.equal(byName.OpenSession.responseStream, false);
  assert.equal(byName.WatchSessions.requestStream, false);
  assert.equal(byName.WatchSessions.responseStream, true);
});

test('file by name: norn/v1/stats_service.proto', async () => {
  const descriptor = await reflection('v1').getDescriptorByFileName('norn/v1/stats_service.proto', deadline());
  const root = descriptor.getProtobufJsRoot();
  const svc = root.lookupService('norn.v1.StatsService');
  assert.deepEqual(Object.keys(svc.methods), ['GetStats']);
  assert.ok(protoFieldNames(root.lookupType('norn.v1.Stats')).includes('total_sessions'));
});

test('unknown symbol is an error', async () => {
  await assert.rejects(
    reflection('v1alpha').getDescriptorBySymbol('norn.v1.NoSuchThing', deadline()),
    (err) => err instanceof ReflectionRequestException && /NoSuchThing/.test(err.message),
  );
  await assert.rejects(
    reflection('v1').getDescriptorByFileName('norn/v1/no_such.proto', deadline()),
    (err) => err instanceof ReflectionRequestException,
  );
});

test('reflection-only client: Health.Check via a package definition from reflection', async () => {
  const descriptor = await reflection('v1alpha').getDescriptorBySymbol('grpc.health.v1.Health', deadline());
  const pkg = descriptor.getPackageObject({ keepCase: true, enums: String, longs: String, defaults: true });
  const Health = pkg.grpc.health.v1.Health;
  assert.equal(typeof Health, 'function', 'Health client constructor');
  const health = new Health(nornd.target, grpc.credentials.createInsecure());
  clients.push(health);

  const whole = await unaryCall(health, 'Check', { service: '' });
  assert.equal(whole.status, 'SERVING');
  const session = await unaryCall(health, 'Check', { service: 'norn.v1.SessionService' });
  assert.equal(session.status, 'SERVING');
  await assert.rejects(unaryCall(health, 'Check', { service: 'no.such.Service' }),
    (err) => err.code === grpc.status.NOT_FOUND);
});

test('reflection-only client: a norn.v1 RPC answers a proper status', async () => {
  const descriptor = await reflection('v1alpha').getDescriptorBySymbol('norn.v1.StatsService', deadline());
  const pkg = descriptor.getPackageObject({ keepCase: true, enums: String, longs: String, defaults: true });
  const stats = new pkg.norn.v1.StatsService(nornd.target, grpc.credentials.createInsecure());
  clients.push(stats);
  // UNIMPLEMENTED until StatsService is implemented, then OK with a Stats.
  try {
    const resp = await unaryCall(stats, 'GetStats', {});
    assert.ok(resp.stats, 'GetStatsResponse.stats');
  } catch (err) {
    assert.equal(err.code, grpc.status.UNIMPLEMENTED, `GetStats: ${err.message}`);
  }
});

// Keep last: stops the shared server.
test('SIGTERM: nornd drains and exits 0', async () => {
  for (const c of clients.splice(0)) c.close();
  const exit = await nornd.terminate(20000);
  assert.deepEqual(exit, { code: 0, signal: null }, `exit ${JSON.stringify(exit)}; log:\n${nornd.logText()}`);
});
