// The identity provider of the sign-in tests: oidc-provider (a certified OpenID Connect
// provider, installed by scripts/install-real-clients) on a loopback port of its own.
//
// Prints `issuer <url>` once listening, then reads one line from standard input: the redirect
// URI of the client it must know (`sluice`, secret `sluice-secret`). Accounts: any login name
// signs in (its password is not checked: oidc-provider's development login page), as
// `<login>@example.com` (or the login itself when it is an address), with groups from ACCOUNT_GROUPS (JSON: login → groups). A POST to
// `/test/remove/<login>` removes that account: its refresh tokens stop working, as when a user is
// deprovisioned at the company's provider.
//
// Run with the path of the oidc-provider installation in OIDC_PROVIDER_DIR.
import http from 'node:http';
import readline from 'node:readline';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(path.join(process.env.OIDC_PROVIDER_DIR, 'package.json'));
const { default: Provider } = await import(require.resolve('oidc-provider'));

const groups = JSON.parse(process.env.ACCOUNT_GROUPS || '{}');
const removed = new Set();
const server = http.createServer();
await new Promise((done) => server.listen(0, '127.0.0.1', done));
const issuer = `http://127.0.0.1:${server.address().port}`;
console.log(`issuer ${issuer}`);

const lines = readline.createInterface({ input: process.stdin });
const redirectUri = (await lines[Symbol.asyncIterator]().next()).value.trim();

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'sluice',
    client_secret: 'sluice-secret',
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_post',
  }],
  pkce: { required: () => true },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], groups: ['groups'] },
  scopes: ['openid', 'email', 'groups', 'offline_access'],
  features: { devInteractions: { enabled: true } },
  issueRefreshToken: async () => true,
  async findAccount(ctx, id) {
    if (removed.has(id)) return undefined;
    return {
      accountId: id,
      async claims() {
        const email = id.includes('@') ? id : `${id}@example.com`;
        return { sub: id, email, email_verified: true, groups: groups[id] || [] };
      },
    };
  },
  // The ID token carries the claims itself (sluice reads no userinfo endpoint).
  conformIdTokenClaims: false,
});

const handle = provider.callback();
server.on('request', (req, res) => {
  const match = req.method === 'POST' && req.url.match(/^\/test\/remove\/([^/?]+)$/);
  if (match) {
    removed.add(decodeURIComponent(match[1]));
    res.writeHead(204).end();
    return;
  }
  handle(req, res);
});
console.log('ready');
