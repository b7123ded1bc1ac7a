// Calls the service through a TypeScript client generated from its OpenAPI document
// (/openapi.json; swagger-typescript-api, `npm run generate`), as a client team would:
// no .proto file, no hand-written types. `make client-check` generates the client,
// compiles this file with tsc and runs it against the demo.
//
//   ESIGN_EVIDENCE_URL    the REST address (http://localhost:8080)
//   ESIGN_EVIDENCE_TOKEN  a bearer token, sent as `Authorization: Bearer <token>`
import { readFileSync } from "node:fs";
import {
  Api,
  type HttpResponse,
  type RpcBadRequest,
  type RpcErrorInfo,
  type RpcStatus,
  type V1CreatePersonalEvidencePointRequest,
} from "./gen/api.js";

const baseUrl = process.env.ESIGN_EVIDENCE_URL ?? "http://localhost:8080";
const token = process.env.ESIGN_EVIDENCE_TOKEN ?? null;

// Every operation is marked secure in the document: the security worker adds the header.
const api = new Api<string>({
  baseUrl,
  securityWorker: (t) => (t ? { headers: { Authorization: `Bearer ${t}` } } : {}),
});
api.setSecurityData(token);

const BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest";
const ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo";

function badRequestOf(st: RpcStatus): RpcBadRequest | undefined {
  return st.details?.find((d) => d["@type"] === BAD_REQUEST);
}

function errorInfoOf(st: RpcStatus): RpcErrorInfo | undefined {
  return st.details?.find((d) => d["@type"] === ERROR_INFO);
}

// The generated client throws the response of a failed call; its `error` is the
// google.rpc.Status the document gives every error status.
function statusOf(e: unknown): { http: number; status: RpcStatus } {
  const r = e as HttpResponse<unknown, RpcStatus>;
  if (typeof r?.status !== "number" || r.error == null) {
    throw e;
  }
  return { http: r.status, status: r.error };
}

function check(cond: boolean, what: string): asserts cond {
  if (!cond) {
    throw new Error(`FAILED: ${what}`);
  }
}

let passed = 0;

// 0. Every pattern in the document is a valid ECMAScript regular expression (with the `u`
// flag JSON Schema validators use), so a form or validator built from it can run it.
const document = readFileSync(
  new URL("../../../gen/openapiv2/esign/evidence/v1/evidence.swagger.json", import.meta.url),
  "utf8",
);
const patterns = new Set<string>();
JSON.parse(document, (key, value) => {
  if (key === "pattern" && typeof value === "string") {
    patterns.add(value);
  }
  return value;
});
for (const p of patterns) {
  new RegExp(p, "u");
}
check(patterns.size >= 5, `the document carries the contract's patterns, found ${patterns.size}`);
check(new RegExp([...patterns].find((p) => p.includes("1[3-9]")) ?? "^$", "u").test("19800002222"), "the mobile pattern accepts a mobile number");
console.log(`${patterns.size} patterns in the document compile as ECMAScript (u flag)`);
passed++;

// 1. e签宝's own request example, as the tour sends it with curl.
const seed = JSON.parse(
  readFileSync(new URL("../../../testdata/seed_request.json", import.meta.url), "utf8"),
) as V1CreatePersonalEvidencePointRequest;
const created = await api.evidenceService.createPersonalEvidencePoint(seed);
const eviPointId = created.data.eviPointId ?? "";
check(/^[PH]/.test(eviPointId), `the seed example answers an eviPointId, got ${JSON.stringify(created.data)}`);
console.log(`createPersonalEvidencePoint(seed example): HTTP ${created.status}, eviPointId ${eviPointId}`);
passed++;

// 2. With a customBizId the submission can be looked up.
const customBizId = `ts-client-${Date.now()}`;
const keyed = await api.evidenceService.createPersonalEvidencePoint({ ...seed, customBizId });
const looked = await api.evidenceService.getSubmission(customBizId);
check(
  looked.data.state === "SUBMISSION_STATE_SUCCEEDED" && looked.data.eviPointId === keyed.data.eviPointId,
  `getSubmission finds the keyed call, got ${JSON.stringify(looked.data)}`,
);
console.log(`getSubmission(${customBizId}): ${looked.data.state}, eviPointId ${looked.data.eviPointId}`);
passed++;

// 3. A mistyped cardType. The generated types refuse it at compile time (tsc fails if
// this line ever compiles) ...
// @ts-expect-error "FOO" is not a V1CardType
const mistyped: V1CreatePersonalEvidencePointRequest = { ...seed, cardType: "FOO" };
// ... and the service refuses it at run time with a typed BadRequest naming the field.
try {
  await api.evidenceService.createPersonalEvidencePoint(mistyped);
  check(false, "a mistyped cardType is refused");
} catch (e) {
  const { http, status } = statusOf(e);
  const violations = badRequestOf(status)?.fieldViolations ?? [];
  const info = errorInfoOf(status);
  check(http === 400, `HTTP 400, got ${http}`);
  check(info?.reason === "INVALID_REQUEST", `ErrorInfo.reason INVALID_REQUEST, got ${info?.reason}`);
  check(
    violations.some((v) => v.field === "cardType"),
    `a BadRequest field violation names cardType, got ${JSON.stringify(violations)}`,
  );
  for (const v of violations) {
    console.log(`mistyped cardType: HTTP ${http}, ${info?.reason}, BadRequest field ${v.field}: ${v.description}`);
  }
  passed++;
}

// 4. Without the bearer token (when the service requires one): 401 with its reason.
if (token) {
  const anonymous = new Api({ baseUrl });
  try {
    await anonymous.evidenceService.getSubmission(customBizId);
    check(false, "a call without a token is refused");
  } catch (e) {
    const { http, status } = statusOf(e);
    const info = errorInfoOf(status);
    check(http === 401 && info?.reason === "UNAUTHENTICATED", `401 UNAUTHENTICATED, got ${http} ${info?.reason}`);
    console.log(`no token: HTTP ${http}, ${info?.reason}: ${status.message}`);
    passed++;
  }
}

console.log(`${passed} passed, 0 failed`);
