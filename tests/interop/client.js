#!/usr/bin/env node
// A forgetd client in Node.js, built only from protos/forgetd/v1/*.proto as they are (no generated code),
// to prove the API works outside Python. It predicts, forgets one sample (wait = true), predicts again and
// reads the ledger and its head, checking every answer and recomputing every hash; it exits 1 on the
// first mismatch with a line saying which.
//
// Usage: node client.js ADDRESS SAMPLE_ID   (or FORGETD_ADDRESS, FORGETD_SAMPLE_ID; FORGETD_TOKEN if the
// server wants a bearer token). tests/test_interop.py runs it against a real daemon.
"use strict";

const crypto = require("node:crypto");
const path = require("node:path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const PROTOS = path.resolve(__dirname, "..", "..", "protos");
const ROWS = 3;
// Probabilities travel as float32; a row's sum may be off by a few ulps of float32.
const SUM_TOLERANCE = 1e-4;

function fail(message) {
  console.error(`interop: FAIL: ${message}`);
  process.exit(1);
}

function check(condition, message) {
  if (!condition) fail(message);
}

function loadServices() {
  const definition = protoLoader.loadSync(
    ["forgetd/v1/inference_service.proto", "forgetd/v1/unlearning_service.proto"],
    // keepCase: field names as in the .proto; longs as strings, since uint64 may exceed 2^53.
    { includeDirs: [PROTOS], keepCase: true, longs: String, enums: String, defaults: true, oneofs: true },
  );
  return grpc.loadPackageDefinition(definition).forgetd.v1;
}

// Promise wrapper for a unary call with a deadline.
function unary(client, method, request, metadata, seconds) {
  const deadline = new Date(Date.now() + seconds * 1000);
  return new Promise((resolve, reject) => {
    client[method](request, metadata, { deadline }, (err, response) => (err ? reject(err) : resolve(response)));
  });
}

function readLedger(client, startSeq, limit, metadata) {
  return new Promise((resolve, reject) => {
    const entries = [];
    const call = client.ReadLedger({ start_seq: String(startSeq), limit: String(limit) }, metadata);
    call.on("data", (msg) => entries.push(msg.entry));
    call.on("error", reject);
    call.on("end", () => resolve(entries));
  });
}

// Row-major little-endian float32, exactly rows * columns * 4 bytes, as PredictRequest.features says.
function packRows(rows, columns) {
  const buf = Buffer.alloc(rows * columns * 4);
  for (let i = 0; i < rows * columns; i++) buf.writeFloatLE(((i % 7) - 3) / 3, i * 4);
  return buf;
}

function checkPrediction(p, columns) {
  check(p.rows === ROWS, `Predict answered ${p.rows} rows, asked ${ROWS}`);
  check(p.classes >= 2, `Predict answered ${p.classes} classes, want at least 2`);
  check(p.probabilities.length === p.rows * p.classes,
    `Predict gave ${p.probabilities.length} probabilities, want rows * classes = ${p.rows * p.classes}`);
  check(p.labels.length === p.rows, `Predict gave ${p.labels.length} labels for ${p.rows} rows`);
  check(/^[0-9a-f]{64}$/.test(p.model_digest), `model_digest ${JSON.stringify(p.model_digest)} is not hex SHA-256`);
  for (let r = 0; r < p.rows; r++) {
    const row = p.probabilities.slice(r * p.classes, (r + 1) * p.classes);
    const sum = row.reduce((a, b) => a + b, 0);
    check(row.every((q) => q >= 0 && q <= 1), `row ${r} has a probability outside [0, 1]: ${row}`);
    check(Math.abs(sum - 1) < SUM_TOLERANCE, `row ${r} probabilities sum to ${sum}, not 1`);
    const best = row.indexOf(Math.max(...row)); // indexOf: ties go to the lower index, as the proto says
    check(p.labels[r] === best, `row ${r} label ${p.labels[r]} is not the argmax ${best}`);
  }
  return p;
}

const sha256 = (...parts) => crypto.createHash("sha256").update(Buffer.concat(parts)).digest();

// RFC 9162 section 2.1.1 Merkle tree hash, written from the RFC, not from the Python code.
function merkleRoot(leaves) {
  if (leaves.length === 0) return sha256();
  if (leaves.length === 1) return leaves[0];
  let k = 1;
  while (k * 2 < leaves.length) k *= 2; // the largest power of two below n
  return sha256(Buffer.from([1]), merkleRoot(leaves.slice(0, k)), merkleRoot(leaves.slice(k)));
}

// Every hash is recomputed here, as the protos define them, independently of the Python code that wrote them.
function checkLedger(entries, head, receipt) {
  check(entries.length > 0, "ReadLedger returned no entries");
  check(BigInt(head.size) === BigInt(entries.length), `head size ${head.size}, ledger has ${entries.length} entries`);
  let chain = Buffer.alloc(32); // the chain value before entry 1
  entries.forEach((e, i) => {
    check(BigInt(e.seq) === BigInt(i + 1), `ledger entry ${i} has seq ${e.seq}, want ${i + 1} (gapless from 1)`);
    const leaf = sha256(Buffer.from([0]), e.envelope);
    check(leaf.equals(e.leaf_hash), `seq ${e.seq}: leaf_hash ${e.leaf_hash.toString("hex")} != SHA-256(0x00 || envelope) ${leaf.toString("hex")}`);
    const seq = Buffer.alloc(8);
    seq.writeBigUInt64BE(BigInt(e.seq));
    chain = sha256(Buffer.from([2]), seq, chain, leaf);
    check(chain.equals(e.chain_hash), `seq ${e.seq}: chain_hash ${e.chain_hash.toString("hex")} != recomputed ${chain.toString("hex")}`);
  });
  check(chain.equals(head.chain_hash), "the head's chain_hash is not the last entry's");
  const root = merkleRoot(entries.map((e) => e.leaf_hash));
  check(root.equals(head.merkle_root), `head merkle_root ${head.merkle_root.toString("hex")} != RFC 9162 root ${root.toString("hex")}`);
  const at = (seq) => entries[Number(seq) - 1];
  const requested = at(receipt.requested_seq);
  const applied = at(receipt.applied_seq);
  check(requested && requested.type === "forget.requested",
    `ledger seq ${receipt.requested_seq} is ${requested && requested.type}, want forget.requested`);
  check(applied && applied.type === "forget.applied",
    `ledger seq ${receipt.applied_seq} is ${applied && applied.type}, want forget.applied`);
  check(requested.leaf_hash.equals(receipt.requested_leaf_hash), "receipt.requested_leaf_hash differs from the ledger's");
  check(applied.leaf_hash.equals(receipt.applied_leaf_hash), "receipt.applied_leaf_hash differs from the ledger's");
}

async function main() {
  const address = process.argv[2] || process.env.FORGETD_ADDRESS;
  const sampleId = process.argv[3] || process.env.FORGETD_SAMPLE_ID;
  if (!address || !sampleId) {
    console.error("usage: node client.js ADDRESS SAMPLE_ID (or set FORGETD_ADDRESS and FORGETD_SAMPLE_ID)");
    process.exit(2);
  }
  const metadata = new grpc.Metadata();
  if (process.env.FORGETD_TOKEN) metadata.add("authorization", `Bearer ${process.env.FORGETD_TOKEN}`);

  const v1 = loadServices();
  const credentials = grpc.credentials.createInsecure();
  const inference = new v1.InferenceService(address, credentials);
  const unlearning = new v1.UnlearningService(address, credentials);

  const model = await unary(inference, "GetModel", {}, metadata, 10);
  const columns = model.num_features;
  check(columns > 0, `GetModel says num_features = ${columns}`);
  const request = { features: packRows(ROWS, columns), rows: ROWS, columns };

  const before = checkPrediction(await unary(inference, "Predict", request, metadata, 10), columns);
  check(BigInt(before.model_version) === BigInt(model.version),
    `Predict answered with version ${before.model_version}, GetModel says ${model.version}`);

  const requestId = crypto.randomUUID();
  const forget = await unary(unlearning, "Forget",
    { sample_ids: [sampleId], strategy: "STRATEGY_AUTO", request_id: requestId, wait: true }, metadata, 120);
  check(forget.request_id === requestId, `Forget answered request_id ${forget.request_id}, sent ${requestId}`);
  check(forget.status === "FORGET_STATUS_APPLIED", `Forget with wait = true answered status ${forget.status}`);
  check(forget.samples.length === 1 && forget.samples[0].sample_id === sampleId,
    `Forget samples ${JSON.stringify(forget.samples.map((s) => s.sample_id))}, want [${sampleId}]`);
  const newVersion = BigInt(forget.result.model_version);
  check(newVersion > BigInt(before.model_version),
    `model version did not bump: ${before.model_version} before, ${newVersion} after the forget`);

  const after = checkPrediction(await unary(inference, "Predict", request, metadata, 10), columns);
  check(BigInt(after.model_version) === newVersion,
    `Predict after the forget answered version ${after.model_version}, want ${newVersion}`);
  check(after.model_digest === forget.result.model_digest, "Predict's digest differs from the forget result's");

  // The head first, then the entries up to it: the ledger may only have grown in between.
  const { head } = await unary(unlearning, "GetLedgerHead", {}, metadata, 10);
  checkLedger(await readLedger(unlearning, 1, head.size, metadata), head, forget.receipt);

  inference.close();
  unlearning.close();
  console.log(`interop: OK: version ${before.model_version} -> ${newVersion}, forgot ${sampleId} (request ${requestId})`);
}

main().catch((err) => fail(err.code !== undefined ? `gRPC ${grpc.status[err.code]}: ${err.details}` : err.stack));
