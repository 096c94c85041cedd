// The Node.js side of jwt-trust's interop tests: a batch verifier and signer using the `jose` package.
//
// Reads one JSON job file (path in argv[2]) and prints one JSON document on stdout, in the same
// shape as the Go program in ../go, so the Python tests start node once per run. Verification uses
// createLocalJWKSet + jwtVerify, which is how an application verifies against a mounted JWKS file;
// signing imports the PKCS#8 PEM key the tests generated with jwt_trust.
//
// A library error is data, not a failure of this script: it is reported and the Python side decides
// what was expected. The exit status is non-zero only when the input is unusable.
import { readFileSync } from "node:fs";
import { createLocalJWKSet, importPKCS8, jwtVerify, SignJWT } from "jose";

const LIBRARY = "jose (node)";
// The same leeway as jwt-trust's default, so that every verifier applies the same rule.
const LEEWAY_SECONDS = 60;

async function verify(c, jwks) {
  try {
    const { payload } = await jwtVerify(c.token, jwks, {
      algorithms: [c.alg],
      issuer: c.issuer,
      audience: c.audience,
      requiredClaims: ["exp"],
      clockTolerance: LEEWAY_SECONDS,
      currentDate: new Date(c.now * 1000),
    });
    return { ok: true, sub: payload.sub };
  } catch (error) {
    return { ok: false, error: `${error.code ?? error.name}: ${error.message}` };
  }
}

async function sign(r) {
  try {
    const key = await importPKCS8(readFileSync(r.key, "utf8"), r.alg);
    const token = await new SignJWT({ jti: r.jti })
      .setProtectedHeader({ alg: r.alg, kid: r.kid, typ: r.typ })
      .setIssuer(r.iss)
      .setSubject(r.sub)
      .setAudience(r.aud)
      .setIssuedAt(r.iat)
      .setNotBefore(r.iat)
      .setExpirationTime(r.exp)
      .sign(key);
    return { token };
  } catch (error) {
    // Only the error's class and code: a key parser's message could quote the key.
    return { error: `${error.code ?? error.name}` };
  }
}

async function main() {
  if (process.argv.length !== 3) {
    process.stderr.write("usage: node interop.mjs JOB.json\n");
    process.exit(2);
  }
  const job = JSON.parse(readFileSync(process.argv[2], "utf8"));
  const keySets = new Map();
  const out = { verify: {}, sign: {} };
  for (const c of job.verify ?? []) {
    if (!keySets.has(c.jwks)) {
      keySets.set(c.jwks, createLocalJWKSet(JSON.parse(readFileSync(c.jwks, "utf8"))));
    }
    out.verify[c.id] = { [LIBRARY]: await verify(c, keySets.get(c.jwks)) };
  }
  for (const r of job.sign ?? []) {
    out.sign[r.id] = { [LIBRARY]: await sign(r) };
  }
  process.stdout.write(JSON.stringify(out) + "\n");
}

await main();
