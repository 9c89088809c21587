// A test OpenID Provider on 127.0.0.1 over TLS: node's certified oidc-provider with the
// client-credentials grant, introspection and revocation, plus test-only control endpoints.
// Started by ../oidc.py (OidcProvider), which writes the JSON configuration named by the
// only argument. Nothing secret is ever logged: not a client secret, not a token.
//
// Control endpoints (loopback tests only; they answer before the provider sees a request):
//   GET  /_stats    token requests so far, by client and status, and the last ones in order
//   POST /_fault    {"count", "status", "error", "retry_after", "delay", "endpoint"}: the next
//                   `count` requests to `endpoint` ("token" or "discovery") fail that way
//                   (after `delay` seconds); a `delay` alone makes them slow, not failed
//   POST /_reset    forget the counts and pending faults
//   POST /_clients  add or replace a client (the same shape as in the configuration)
//   DELETE /_clients/<id>  remove a client (its next token request: invalid_client)
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { generateKeyPairSync, randomBytes } from 'node:crypto';

import Provider, { errors } from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const TOKEN_PATH = '/token';
const DISCOVERY_PATH = '/.well-known/openid-configuration';
const DEFAULT_LIFETIME = config.default_token_lifetime ?? 3600;

function clientMetadata(spec) {
  return {
    client_id: spec.client_id,
    client_secret: spec.client_secret,
    token_endpoint_auth_method: spec.token_endpoint_auth_method ?? 'client_secret_basic',
    grant_types: spec.grant_types ?? ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    scope: spec.scope ?? config.scopes.join(' '),
    token_lifetime: spec.token_lifetime ?? DEFAULT_LIFETIME,
  };
}

// The provider's own in-memory adapter is an LRU of 1000 entries shared by every model: a
// busy test session would evict its clients. This one keeps clients for good and drops
// other entries when they expire (only the client-credentials grant is used here).
const stores = new Map();
class TestAdapter {
  constructor(model) {
    this.model = model;
    if (!stores.has(model)) stores.set(model, new Map());
    this.store = stores.get(model);
  }

  async upsert(id, payload, expiresIn) {
    const expiresAt = typeof expiresIn === 'number' ? Date.now() + expiresIn * 1000 : Infinity;
    this.store.set(id, { payload, expiresAt });
    sweep(this.store);
  }

  async find(id) {
    const entry = this.store.get(id);
    if (entry === undefined) return undefined;
    if (entry.expiresAt <= Date.now()) {
      this.store.delete(id);
      return undefined;
    }
    return entry.payload;
  }

  async findByUid(uid) {
    for (const [id, entry] of this.store) if (entry.payload.uid === uid) return this.find(id);
    return undefined;
  }

  async findByUserCode(userCode) {
    for (const [id, entry] of this.store) if (entry.payload.userCode === userCode) return this.find(id);
    return undefined;
  }

  async consume(id) {
    const entry = this.store.get(id);
    if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    this.store.delete(id);
  }

  async revokeByGrantId(grantId) {
    for (const [id, entry] of this.store) if (entry.payload.grantId === grantId) this.store.delete(id);
  }
}

let sweeps = 0;
function sweep(store) {
  sweeps += 1;
  if (sweeps % 500 !== 0) return;
  const now = Date.now();
  for (const [id, entry] of store) if (entry.expiresAt <= now) store.delete(id);
}

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });

const provider = new Provider(config.issuer, {
  adapter: TestAdapter,
  clients: [],
  jwks: { keys: [{ ...privateKey.export({ format: 'jwk' }), kid: 'test-signing', use: 'sig', alg: 'RS256' }] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  scopes: ['openid', ...config.scopes],
  extraClientMetadata: { properties: ['token_lifetime'] },
  clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: {
      enabled: true,
      // any authenticated client may ask (the resource server does)
      allowedPolicy: async () => true,
    },
    // RFC 8707 resource indicators: no resource server is configured, so `resource` is
    // refused (invalid_target); `audience` is not a parameter oidc-provider knows: ignored
    resourceIndicators: {
      enabled: true,
      getResourceServerInfo: async () => {
        throw new errors.InvalidTarget();
      },
    },
    revocation: {
      enabled: true,
      // a client may revoke its own tokens; the resource server may revoke any
      allowedPolicy: async (ctx, client, token) =>
        token.clientId === client.clientId || client.clientId === config.resource_server.client_id,
    },
  },
  ttl: {
    // seconds, per client (its token_lifetime), as the tests need lifetimes of a few seconds
    ClientCredentials: (ctx, token, client) => Number(client.token_lifetime ?? DEFAULT_LIFETIME),
    AccessToken: 3600,
    AuthorizationCode: 60,
    IdToken: 3600,
    Interaction: 600,
    Session: 3600,
    Grant: 3600,
  },
  routes: { token: TOKEN_PATH },
  renderError: async (ctx, out) => {
    ctx.type = 'json';
    ctx.body = out;
  },
});

async function putClient(spec) {
  await provider.Client.adapter.upsert(spec.client_id, clientMetadata(spec));
}

// -------------------------------------------------------------------------- test control

let stats;
let faults;
function reset() {
  stats = { token_requests: 0, discovery_requests: 0, by_client: {}, requests: [] };
  faults = [];
}
reset();

function basicClientId(header) {
  if (!header || !header.toLowerCase().startsWith('basic ')) return undefined;
  try {
    const pair = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
    return decodeURIComponent(pair.slice(0, pair.indexOf(':')).replace(/\+/g, '%20'));
  } catch {
    return undefined;
  }
}

function authMethod(ctx) {
  if ((ctx.get('authorization') || '').toLowerCase().startsWith('basic ')) return 'client_secret_basic';
  if (ctx.oidc?.body?.client_secret !== undefined) return 'client_secret_post';
  return 'none';
}

async function readJson(ctx) {
  const chunks = [];
  for await (const chunk of ctx.req) chunks.push(chunk);
  const raw = Buffer.concat(chunks).toString('utf8');
  return raw ? JSON.parse(raw) : {};
}

function takeFault(endpoint) {
  const index = faults.findIndex((fault) => fault.endpoint === endpoint);
  if (index === -1) return undefined;
  const fault = faults[index];
  fault.count -= 1;
  if (fault.count <= 0) faults.splice(index, 1);
  return fault;
}

function sleep(seconds) {
  return new Promise((resolve) => setTimeout(resolve, (seconds || 0) * 1000));
}

async function answerFault(ctx, fault) {
  await sleep(fault.delay);
  ctx.status = fault.status;
  ctx.set('Cache-Control', 'no-store');
  if (fault.retry_after !== undefined && fault.retry_after !== null) {
    ctx.set('Retry-After', String(fault.retry_after));
  }
  if (fault.status === 401) ctx.set('WWW-Authenticate', 'Basic realm="test"');
  if (fault.error) {
    ctx.body = { error: fault.error, error_description: 'injected by the test' };
  } else {
    ctx.type = 'text/plain';
    ctx.body = 'injected by the test\n';
  }
}

provider.use(async (ctx, next) => {
  const { path, method } = ctx;
  if (path === '/_stats' && method === 'GET') {
    ctx.body = { ...stats, pending_faults: faults };
    return;
  }
  if (path === '/_reset' && method === 'POST') {
    reset();
    ctx.status = 204;
    return;
  }
  if (path === '/_fault' && method === 'POST') {
    const body = await readJson(ctx);
    const fault = {
      endpoint: body.endpoint ?? 'token',
      count: body.count ?? 1,
      // an error code: 400 (401 for invalid_client); a delay alone: a slow but real answer
      status: body.status ?? (body.error ? (body.error === 'invalid_client' ? 401 : 400) : body.delay ? null : 503),
      error: body.error ?? null,
      retry_after: body.retry_after ?? null,
      delay: body.delay ?? 0,
    };
    faults.push(fault);
    ctx.status = 201;
    ctx.body = fault;
    return;
  }
  if (path === '/_clients' && method === 'POST') {
    await putClient(await readJson(ctx));
    ctx.status = 204;
    return;
  }
  if (path.startsWith('/_clients/') && method === 'DELETE') {
    await provider.Client.adapter.destroy(decodeURIComponent(path.slice('/_clients/'.length)));
    ctx.status = 204;
    return;
  }

  if (path === DISCOVERY_PATH) {
    stats.discovery_requests += 1;
    const fault = takeFault('discovery');
    if (fault && fault.status === null) {
      await sleep(fault.delay);
    } else if (fault) {
      await answerFault(ctx, fault);
      return;
    }
    await next();
    return;
  }
  if (path !== TOKEN_PATH || method !== 'POST') {
    await next();
    return;
  }

  stats.token_requests += 1;
  const fault = takeFault('token');
  if (fault && fault.status === null) {
    await sleep(fault.delay);
  } else if (fault) {
    const clientId = basicClientId(ctx.get('authorization')) ?? '?';
    record(ctx, clientId, fault.status, fault.error ?? 'injected', {});
    await answerFault(ctx, fault);
    return;
  }
  await next();
  const body = ctx.oidc?.body ?? {};
  const clientId = ctx.oidc?.client?.clientId ?? basicClientId(ctx.get('authorization')) ?? body.client_id ?? '?';
  const error = ctx.status >= 400 && ctx.body && typeof ctx.body === 'object' ? ctx.body.error : null;
  record(ctx, clientId, ctx.status, error, body);
});

function record(ctx, clientId, status, error, body) {
  const perClient = (stats.by_client[clientId] ??= {});
  perClient[status] = (perClient[status] ?? 0) + 1;
  stats.requests.push({
    client_id: clientId,
    status,
    error,
    auth_method: authMethod(ctx),
    grant_type: body.grant_type ?? null,
    scope: body.scope ?? null,
    audience: body.audience ?? null,
    resource: body.resource ?? null,
    at: Date.now() / 1000,
  });
  if (stats.requests.length > 1000) stats.requests.shift();
}

provider.on('server_error', (ctx, error) => {
  console.error(`server_error on ${ctx.method} ${ctx.path}: ${error.name}`);
});

// -------------------------------------------------------------------------- start

for (const spec of [...config.clients, config.resource_server]) {
  await putClient(spec);
}

const server = createServer(
  { cert: readFileSync(config.tls.cert), key: readFileSync(config.tls.key) },
  provider.callback(),
);
server.on('error', (error) => {
  console.error(`listen failed: ${error.code === 'EADDRINUSE' ? 'address already in use' : error.code}`);
  process.exit(1);
});
server.listen(config.port, '127.0.0.1', () => {
  console.log(`oidc-provider ready at ${config.issuer}`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
