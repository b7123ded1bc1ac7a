// Calls esign-evidence from Node.js through stubs generated from the contract
// (protoc-gen-es) over gRPC (Connect's Node transport).
//
// 1. e签宝's own request example is decoded, validated here with protovalidate (the same
//    rules the server runs), and sent; the eviPointId is printed.
// 2. A bad request is caught here by protovalidate, then sent anyway to show that the
//    server reports the same field paths in a google.rpc.BadRequest.
//
// Usage: node index.js [host:port]   (default localhost:9090; the service in demo mode)
import { readFileSync } from "node:fs";
import { fromJson } from "@bufbuild/protobuf";
import { createClient, ConnectError } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { createValidator } from "@bufbuild/protovalidate";
import {
  CreatePersonalEvidencePointRequestSchema,
  EvidenceService,
} from "./gen/esign/evidence/v1/evidence_pb.js";
import { BadRequestSchema, ErrorInfoSchema } from "./gen/google/rpc/error_details_pb.js";

const target = process.argv[2] ?? "localhost:9090";
const seedPath = new URL("../../testdata/seed_request.json", import.meta.url);

const transport = createGrpcTransport({ baseUrl: `http://${target}` });
const client = createClient(EvidenceService, transport);
const validator = createValidator();

// The JSON path of a protovalidate violation, as the server reports it: fields by their
// JSON names; a message-level rule of the request by the field its id starts with
// ("<field>.<rule>", the contract's convention).
function fieldPath(violation) {
  const parts = violation.field
    .filter((p) => p.kind === "field" || p.kind === "oneof")
    .map((p) => (p.kind === "field" ? p.jsonName : p.name));
  if (parts.length > 0) {
    return parts.join(".");
  }
  const [first] = violation.ruleId.split(".");
  return CreatePersonalEvidencePointRequestSchema.fields.some((f) => f.jsonName === first) ? first : "";
}

async function main() {
  // 1. The seed example: valid, sent, answered.
  const seed = fromJson(CreatePersonalEvidencePointRequestSchema, JSON.parse(readFileSync(seedPath, "utf8")));
  const check = validator.validate(CreatePersonalEvidencePointRequestSchema, seed);
  if (check.kind !== "valid") {
    throw new Error(`the seed example should be valid: ${check.error}`);
  }
  const res = await client.createPersonalEvidencePoint(seed);
  console.log(`eviPointId: ${res.eviPointId}`);
  if (!/^[PH]/.test(res.eviPointId)) {
    throw new Error("an eviPointId starts with P or H");
  }

  // 2. A bad request: a mobile number that is not a mainland one, and a realNameMethod
  //    that disagrees with the block (a message-level rule, reported at its field).
  const bad = fromJson(CreatePersonalEvidencePointRequestSchema, {
    ...JSON.parse(readFileSync(seedPath, "utf8")),
    realNameMethod: "FACE",
  });
  bad.verification.value.mobile = "12345";
  const local = validator.validate(CreatePersonalEvidencePointRequestSchema, bad);
  if (local.kind !== "invalid") {
    throw new Error("protovalidate should have caught the bad request");
  }
  const clientPaths = local.violations.map(fieldPath).sort();
  console.log(`caught before sending: ${clientPaths.join(", ")}`);

  let serverPaths = [];
  try {
    await client.createPersonalEvidencePoint(bad);
    throw new Error("the server accepted a bad request");
  } catch (err) {
    const e = ConnectError.from(err);
    const [info] = e.findDetails(ErrorInfoSchema);
    const [badRequest] = e.findDetails(BadRequestSchema);
    serverPaths = (badRequest?.fieldViolations ?? []).map((v) => v.field).sort();
    console.log(`server said ${e.code === 3 ? "INVALID_ARGUMENT" : e.code} (${info?.reason}): ${serverPaths.join(", ")}`);
    for (const v of badRequest?.fieldViolations ?? []) {
      console.log(`  ${v.field}: ${v.description}`);
    }
  }
  if (JSON.stringify(clientPaths) !== JSON.stringify(serverPaths)) {
    throw new Error(`client ${clientPaths} and server ${serverPaths} disagree`);
  }
  console.log("client-side and server-side validation name the same fields");
}

main().catch((err) => {
  console.error(`node example failed: ${err.message ?? err}`);
  process.exit(1);
});
