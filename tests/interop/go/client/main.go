// Command client is a forgetd client in Go, built from stubs that protoc generates from protos/forgetd/v1
// (nothing generated is committed) and checked with Go's own transparency-log code, golang.org/x/mod's
// sumdb/note and sumdb/tlog, independently of forgetd's Python.
//
// Live mode predicts, forgets one sample (wait = true), reads the whole ledger and its head, and checks
// every hash: leaf hashes recomputed from the envelopes (tlog.RecordHash is SHA-256(0x00 || data), forgetd's
// leaf hash), the chain, the Merkle root, the head's Ed25519 signature, the receipt's and the head's
// inclusion proofs (tlog.CheckRecord), a consistency proof from the head before the forget (tlog.CheckTree)
// and, when the server sends one, the head's C2SP checkpoint (note.Open with GetModel's verifier key):
//
//	client -addr 127.0.0.1:PORT -forget synthetic:42 [-tlog-proof FILE] [-require-checkpoint]
//
// -verify-proofs FILE reads a JSON list of {"tlog_proof", "verifier_key", "leaf_hash_hex"} items and
// verifies each c2sp.org/tlog-proof@v1 offline, printing how many it accepted and refused.
//
// It prints one JSON object saying what it checked; on any failure it prints one line to stderr and exits 1.
// Build: GO111MODULE=off GOPATH=<stubs>:/usr/share/gocode go build ./tests/interop/go/client
// (tests/test_client_interop_go.py does it, generating the stubs into a temporary GOPATH).
package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	pb "example.com/forgetd/gen/go/forgetd/v1"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

const (
	proofHeader    = "c2sp.org/tlog-proof@v1"
	chainExtension = "forgetd-chain"
	headContext    = "forgetd.ledger.head.v1\n" // signing.py: the domain of a head signature
	maxProofHashes = 63
	// Probabilities travel as float32; a row's sum may be off by a few ulps of float32.
	sumTolerance = 1e-4
)

type options struct {
	addr, forget, token, tlogProof, verifyProofs, verifierKey string
	rows                                                      int
	requireCheckpoint                                         bool
	timeout                                                   time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.addr, "addr", "", "forgetd's gRPC address, HOST:PORT")
	flag.StringVar(&o.forget, "forget", "", "the sample id to forget (wait = true)")
	flag.StringVar(&o.token, "token", "", "bearer token (default: $FORGETD_TOKEN)")
	flag.StringVar(&o.tlogProof, "tlog-proof", "", "a c2sp.org/tlog-proof@v1 file to verify against the live ledger")
	flag.StringVar(&o.verifierKey, "verifier-key", "", "the checkpoint verifier key, if GetModel does not send one")
	flag.BoolVar(&o.requireCheckpoint, "require-checkpoint", false,
		"fail unless the server sends signed checkpoints, its verifier key and its checkpoint origin")
	flag.StringVar(&o.verifyProofs, "verify-proofs", "", "offline: a JSON list of tlog-proofs to verify")
	flag.IntVar(&o.rows, "rows", 3, "rows to predict")
	flag.DurationVar(&o.timeout, "timeout", 3*time.Minute, "deadline for the whole run")
	flag.Parse()
	if o.token == "" {
		o.token = os.Getenv("FORGETD_TOKEN") // not the flag's default, which -h would print
	}

	var report interface{}
	var err error
	switch {
	case o.verifyProofs != "":
		report, err = verifyProofsFile(o.verifyProofs)
	case o.addr == "" || o.forget == "" || o.rows < 1:
		fmt.Fprintln(os.Stderr, "usage: client -addr HOST:PORT -forget SAMPLE_ID [flags], or client -verify-proofs FILE")
		os.Exit(2)
	default:
		report, err = runLive(o)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "interop-go: FAIL: %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		os.Exit(1)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(report); err != nil {
		fmt.Fprintf(os.Stderr, "interop-go: FAIL: writing the report: %s\n", err)
		os.Exit(1)
	}
}

// ------------------------------------------------------------------------------------------ the live run

type inclusionReport struct {
	Seq      uint64 `json:"seq"`
	TreeSize uint64 `json:"tree_size"`
	Against  string `json:"against"`
}

type liveReport struct {
	Mode               string            `json:"mode"`
	ModelVersionBefore uint64            `json:"model_version_before"`
	ModelVersionAfter  uint64            `json:"model_version_after"`
	Forgot             string            `json:"forgot"`
	RequestID          string            `json:"request_id"`
	PredictedRows      int               `json:"predicted_rows"`
	LedgerEntries      int               `json:"ledger_entries"`
	LeafHashes         string            `json:"leaf_hashes"`
	Chain              string            `json:"chain"`
	MerkleRoot         string            `json:"merkle_root"`
	HeadSignature      string            `json:"head_signature"`
	Checkpoint         string            `json:"checkpoint"`
	CheckpointOrigin   string            `json:"checkpoint_origin"`
	Inclusion          []inclusionReport `json:"inclusion"`
	Consistency        [2]uint64         `json:"consistency"`
	TlogProof          *tlogProofReport  `json:"tlog_proof"`
}

type session struct {
	o          options
	ctx        context.Context
	inference  pb.InferenceServiceClient
	unlearning pb.UnlearningServiceClient
	model      *pb.GetModelResponse
	vkey       string
	report     liveReport
}

func runLive(o options) (*liveReport, error) {
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	if o.token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+o.token)
	}
	conn, err := grpc.DialContext(ctx, o.addr, grpc.WithInsecure(), grpc.WithBlock())
	if err != nil {
		return nil, fmt.Errorf("cannot connect to %s: %v", o.addr, err)
	}
	defer conn.Close()
	s := &session{o: o, ctx: ctx, inference: pb.NewInferenceServiceClient(conn),
		unlearning: pb.NewUnlearningServiceClient(conn)}
	s.report = liveReport{Mode: "live", Forgot: o.forget, Inclusion: []inclusionReport{}}
	for _, step := range []func() error{s.loadModel, s.predictForgetAndRead} {
		if err := step(); err != nil {
			return nil, err
		}
	}
	return &s.report, nil
}

// rpcError says which call failed with the gRPC code in the protos' spelling, e.g. "gRPC NOT_FOUND: ...".
func rpcError(call string, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("%s: %v", call, err)
	}
	names := []string{"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
		"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
		"OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"}
	name := st.Code().String()
	if int(st.Code()) < len(names) {
		name = names[st.Code()]
	}
	return fmt.Errorf("%s: gRPC %s: %s", call, name, st.Message())
}

func (s *session) loadModel() error {
	model, err := s.inference.GetModel(s.ctx, &pb.GetModelRequest{})
	if err != nil {
		return rpcError("GetModel", err)
	}
	if model.NumFeatures == 0 || model.NumClasses < 2 {
		return fmt.Errorf("GetModel says num_features = %d, num_classes = %d", model.NumFeatures, model.NumClasses)
	}
	s.model, s.vkey = model, model.VerifierKey
	if s.o.verifierKey != "" {
		if s.vkey != "" && s.vkey != s.o.verifierKey {
			return fmt.Errorf("-verifier-key %q is not the server's verifier_key %q", s.o.verifierKey, s.vkey)
		}
		s.vkey = s.o.verifierKey
	}
	if s.o.requireCheckpoint && (model.VerifierKey == "" || model.CheckpointOrigin == "") {
		return fmt.Errorf("-require-checkpoint: GetModel sent verifier_key %q and checkpoint_origin %q, want both",
			model.VerifierKey, model.CheckpointOrigin)
	}
	if s.vkey != "" && model.CheckpointOrigin != "" {
		if name := strings.SplitN(s.vkey, "+", 2)[0]; name != model.CheckpointOrigin {
			return fmt.Errorf("the verifier key is named %q, the checkpoint origin is %q: they must be one name",
				name, model.CheckpointOrigin)
		}
	}
	s.report.ModelVersionBefore = model.Version
	s.report.CheckpointOrigin = model.CheckpointOrigin
	return nil
}

func (s *session) predictForgetAndRead() error {
	if err := s.predict(s.model.Version); err != nil {
		return err
	}
	before, err := s.unlearning.GetLedgerHead(s.ctx, &pb.GetLedgerHeadRequest{})
	if err != nil {
		return rpcError("GetLedgerHead", err)
	}
	if _, err := s.checkHead(before.Head, "the head before the forget"); err != nil {
		return err
	}
	forget, err := s.forgetOne()
	if err != nil {
		return err
	}
	if err := s.predict(forget.Result.ModelVersion); err != nil {
		return err
	}
	receipt := forget.Receipt
	seqs := []uint64{receipt.RequestedSeq, receipt.AppliedSeq}
	after, err := s.unlearning.GetLedgerHead(s.ctx, &pb.GetLedgerHeadRequest{
		ConsistencyFromSize: before.Head.Size, InclusionSeqs: seqs})
	if err != nil {
		return rpcError("GetLedgerHead", err)
	}
	tree, entries, err := s.readLedger(after.Head)
	if err != nil {
		return err
	}
	if err := s.checkProofs(before.Head, after, tree); err != nil {
		return err
	}
	if err := checkReceiptEntries(receipt, entries); err != nil {
		return err
	}
	if s.o.tlogProof != "" {
		s.report.TlogProof, err = verifyProofAgainstLedger(s.o.tlogProof, s.vkey, tree)
	}
	return err
}

// ------------------------------------------------------------------------------------------ predict, forget

func (s *session) predict(version uint64) error {
	rows, columns := s.o.rows, int(s.model.NumFeatures)
	features := make([]byte, 4*rows*columns)
	for i := 0; i < rows*columns; i++ {
		binary.LittleEndian.PutUint32(features[4*i:], math.Float32bits(float32(i%7-3)/3))
	}
	req := &pb.PredictRequest{Features: features, Rows: uint32(rows), Columns: uint32(columns)}
	p, err := s.inference.Predict(s.ctx, req)
	if err != nil {
		return rpcError("Predict", err)
	}
	if int(p.Rows) != rows || len(p.Labels) != rows || len(p.Probabilities) != rows*int(p.Classes) {
		return fmt.Errorf("Predict answered %d rows, %d labels, %d probabilities for %d rows of %d classes",
			p.Rows, len(p.Labels), len(p.Probabilities), rows, p.Classes)
	}
	if p.ModelVersion != version {
		return fmt.Errorf("Predict answered with model version %d, want %d", p.ModelVersion, version)
	}
	for r := 0; r < rows; r++ {
		row := p.Probabilities[r*int(p.Classes) : (r+1)*int(p.Classes)]
		best, sum := 0, 0.0
		for c, q := range row {
			if q < 0 || q > 1 {
				return fmt.Errorf("Predict row %d has probability %v outside [0, 1]", r, q)
			}
			if q > row[best] {
				best = c // strictly greater: ties go to the lower index, as the proto says
			}
			sum += float64(q)
		}
		if math.Abs(sum-1) > sumTolerance || int(p.Labels[r]) != best {
			return fmt.Errorf("Predict row %d: probabilities sum to %v, label %d, argmax %d", r, sum, p.Labels[r], best)
		}
	}
	s.report.PredictedRows += rows
	return nil
}

func newRequestID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80 // UUID version 4, RFC 4122 variant
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func (s *session) forgetOne() (*pb.ForgetResponse, error) {
	id := newRequestID()
	f, err := s.unlearning.Forget(s.ctx, &pb.ForgetRequest{SampleIds: []string{s.o.forget},
		Strategy: pb.Strategy_STRATEGY_AUTO, RequestId: id, Wait: true})
	if err != nil {
		return nil, rpcError("Forget", err)
	}
	switch {
	case f.RequestId != id:
		return nil, fmt.Errorf("Forget answered request_id %q, sent %q", f.RequestId, id)
	case f.Status != pb.ForgetStatus_FORGET_STATUS_APPLIED || f.Result == nil || f.Receipt == nil:
		return nil, fmt.Errorf("Forget with wait = true answered status %s (result or receipt missing?)", f.Status)
	case len(f.Samples) != 1 || f.Samples[0].SampleId != s.o.forget:
		return nil, fmt.Errorf("Forget answered %d sample outcomes, want one for %q", len(f.Samples), s.o.forget)
	case f.Result.ModelVersion <= s.model.Version:
		return nil, fmt.Errorf("the model version did not bump: %d before, %d after", s.model.Version, f.Result.ModelVersion)
	case f.Receipt.RequestedSeq == 0 || f.Receipt.AppliedSeq == 0 || f.Receipt.Head == nil:
		return nil, fmt.Errorf("the receipt lacks a seq or its head: %v", f.Receipt)
	}
	if err := s.checkReceipt(f.Receipt); err != nil {
		return nil, err
	}
	s.report.RequestID, s.report.ModelVersionAfter = id, f.Result.ModelVersion
	return f, nil
}

// checkReceipt verifies the receipt on its own, as a requester holding only it would: its head, and both
// entries' inclusion proofs against that head.
func (s *session) checkReceipt(r *pb.Receipt) error {
	if _, err := s.checkHead(r.Head, "the receipt's head"); err != nil {
		return err
	}
	for _, c := range []struct {
		what  string
		seq   uint64
		leaf  []byte
		proof *pb.InclusionProof
	}{{"forget.requested", r.RequestedSeq, r.RequestedLeafHash, r.RequestedProof},
		{"forget.applied", r.AppliedSeq, r.AppliedLeafHash, r.AppliedProof}} {
		leaf, err := toHash(c.leaf, "the receipt's "+c.what+" leaf hash")
		if err != nil {
			return err
		}
		if err := checkInclusion(c.proof, c.seq, r.Head, leaf); err != nil {
			return fmt.Errorf("the receipt's %s proof: %v", c.what, err)
		}
		s.report.Inclusion = append(s.report.Inclusion, inclusionReport{c.seq, r.Head.Size, "receipt head"})
	}
	return nil
}

// ------------------------------------------------------------------------------------------ ledger and head

// readLedger reads entries 1..head.size and checks each against its envelope, the chain and the head.
func (s *session) readLedger(head *pb.LedgerHead) (*merkleTree, []*pb.LedgerEntry, error) {
	stream, err := s.unlearning.ReadLedger(s.ctx, &pb.ReadLedgerRequest{StartSeq: 1, Limit: head.Size})
	if err != nil {
		return nil, nil, rpcError("ReadLedger", err)
	}
	tree, chain := &merkleTree{}, make([]byte, sha256.Size)
	var entries []*pb.LedgerEntry
	for {
		msg, err := stream.Recv()
		if err == io.EOF {
			break
		} else if err != nil {
			return nil, nil, rpcError("ReadLedger", err)
		}
		e := msg.Entry
		if e == nil || e.Seq != uint64(len(entries)+1) {
			return nil, nil, fmt.Errorf("ReadLedger entry %d is %v, want seq %d (gapless from 1)",
				len(entries), e, len(entries)+1)
		}
		if chain, err = checkEntry(e, chain); err != nil {
			return nil, nil, err
		}
		if err := tree.append(tlog.RecordHash(e.Envelope)); err != nil {
			return nil, nil, err
		}
		entries = append(entries, e)
	}
	if uint64(len(entries)) != head.Size || !bytes.Equal(chain, head.ChainHash) {
		return nil, nil, fmt.Errorf("the head (size %d, chain %x) is not the ledger read (%d entries, chain %x)",
			head.Size, head.ChainHash, len(entries), chain)
	}
	s.report.LedgerEntries = len(entries)
	s.report.LeafHashes = "recomputed from the envelopes: SHA-256(0x00 || envelope) (tlog.RecordHash)"
	s.report.Chain = "recomputed: SHA-256(0x02 || seq || previous || leaf) up to the head's chain_hash"
	return tree, entries, nil
}

// checkEntry checks one entry's leaf hash, chain hash and envelope fields; it returns the new chain value.
func checkEntry(e *pb.LedgerEntry, previous []byte) ([]byte, error) {
	leaf := tlog.RecordHash(e.Envelope)
	if !bytes.Equal(leaf[:], e.LeafHash) {
		return nil, fmt.Errorf("seq %d: leaf_hash %x, SHA-256(0x00 || envelope) is %x", e.Seq, e.LeafHash, leaf[:])
	}
	msg := []byte{0x02}
	msg = binary.BigEndian.AppendUint64(msg, e.Seq)
	msg = append(append(msg, previous...), leaf[:]...)
	chain := sha256.Sum256(msg)
	if !bytes.Equal(chain[:], e.ChainHash) {
		return nil, fmt.Errorf("seq %d: chain_hash %x, recomputed %x", e.Seq, e.ChainHash, chain[:])
	}
	var env struct {
		V          uint32 `json:"v"`
		Seq        uint64 `json:"seq"`
		EventID    string `json:"event_id"`
		Type       string `json:"type"`
		RecordedAt string `json:"recorded_at"`
	}
	if err := json.Unmarshal(e.Envelope, &env); err != nil {
		return nil, fmt.Errorf("seq %d: the envelope is not JSON: %v", e.Seq, err)
	}
	if env.Seq != e.Seq || env.EventID != e.EventId || env.Type != e.Type || env.V != e.SchemaVersion ||
		env.RecordedAt != e.RecordedAt {
		return nil, fmt.Errorf("seq %d: the envelope says %+v, the entry's fields differ", e.Seq, env)
	}
	return chain[:], nil
}

// checkHead checks the head's Ed25519 signature and, when present, its checkpoint (mandatory with
// -require-checkpoint); it returns the verified checkpoint, nil when the head has none.
func (s *session) checkHead(h *pb.LedgerHead, what string) (*checkpoint, error) {
	if h == nil || len(h.ChainHash) != sha256.Size || len(h.MerkleRoot) != sha256.Size {
		return nil, fmt.Errorf("%s is missing or its hashes are not 32 bytes: %v", what, h)
	}
	s.report.HeadSignature = "absent"
	if len(h.Signature) > 0 {
		if hex.EncodeToString(h.PublicKey) != s.model.HeadPublicKey || len(h.PublicKey) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%s is signed by key %x, GetModel's head key is %s", what, h.PublicKey, s.model.HeadPublicKey)
		}
		msg := binary.BigEndian.AppendUint64([]byte(headContext), h.Size)
		msg = append(append(msg, h.ChainHash...), h.MerkleRoot...)
		if !ed25519.Verify(h.PublicKey, msg, h.Signature) {
			return nil, fmt.Errorf("%s (size %d): the Ed25519 head signature does not verify", what, h.Size)
		}
		s.report.HeadSignature = "verified (Ed25519 over forgetd.ledger.head.v1)"
	}
	if h.Checkpoint == "" {
		if s.o.requireCheckpoint {
			return nil, fmt.Errorf("-require-checkpoint: %s (size %d) has no checkpoint", what, h.Size)
		}
		s.report.Checkpoint = "absent: the server sends none"
		return nil, nil
	}
	cp, _, err := openCheckpoint([]byte(h.Checkpoint), s.vkey)
	if err != nil {
		return nil, fmt.Errorf("%s: its checkpoint: %v", what, err)
	}
	root, _ := toHash(h.MerkleRoot, "")
	if cp.Size != int64(h.Size) || cp.Root != root || !bytes.Equal(cp.Chain, h.ChainHash) {
		return nil, fmt.Errorf("%s: its checkpoint says size %d, root %s, chain %x; the head says %d, %x, %x",
			what, cp.Size, cp.Root, cp.Chain, h.Size, h.MerkleRoot, h.ChainHash)
	}
	if s.model.CheckpointOrigin != "" && cp.Origin != s.model.CheckpointOrigin {
		return nil, fmt.Errorf("%s: its checkpoint origin is %q, GetModel says %q", what, cp.Origin, s.model.CheckpointOrigin)
	}
	s.report.Checkpoint = "verified (note.Open with the verifier key; size, root and forgetd-chain match the head)"
	return cp, nil
}

// checkProofs checks the GetLedgerHead answer: the head against the recomputed tree, the inclusion proofs
// and the consistency proof from the head before the forget.
func (s *session) checkProofs(before *pb.LedgerHead, after *pb.GetLedgerHeadResponse, tree *merkleTree) error {
	if _, err := s.checkHead(after.Head, "the head after the forget"); err != nil {
		return err
	}
	root, err := tree.root(tree.n)
	if err != nil || !bytes.Equal(root[:], after.Head.MerkleRoot) {
		return fmt.Errorf("the head's merkle_root %x is not the RFC 6962 root of the entries read, %s (%v)",
			after.Head.MerkleRoot, root, err)
	}
	s.report.MerkleRoot = "recomputed from the leaves (tlog.TreeHash), equal to the head's"
	if len(after.Inclusions) != 2 {
		return fmt.Errorf("GetLedgerHead answered %d inclusion proofs for 2 seqs", len(after.Inclusions))
	}
	for _, p := range after.Inclusions {
		if p.Seq == 0 || p.Seq > uint64(tree.n) {
			return fmt.Errorf("an inclusion proof for seq %d, outside the ledger read (1..%d)", p.Seq, tree.n)
		}
		if err := checkInclusion(p, p.Seq, after.Head, tree.leaves[p.Seq-1]); err != nil {
			return err
		}
		s.report.Inclusion = append(s.report.Inclusion, inclusionReport{p.Seq, after.Head.Size, "head"})
	}
	c := after.Consistency
	if c == nil || c.OldSize != before.Size || c.NewSize != after.Head.Size {
		return fmt.Errorf("GetLedgerHead's consistency proof is %v, want %d -> %d", c, before.Size, after.Head.Size)
	}
	proof, err := toHashes(c.Hashes, "consistency proof")
	if err != nil {
		return err
	}
	oldRoot, _ := toHash(before.MerkleRoot, "")
	if err := tlog.CheckTree(proof, int64(c.NewSize), root, int64(c.OldSize), oldRoot); err != nil {
		return fmt.Errorf("the consistency proof %d -> %d does not verify (tlog.CheckTree): %v", c.OldSize, c.NewSize, err)
	}
	s.report.Consistency = [2]uint64{c.OldSize, c.NewSize}
	return nil
}

func checkInclusion(p *pb.InclusionProof, seq uint64, head *pb.LedgerHead, leaf tlog.Hash) error {
	if p == nil || p.Seq != seq || p.TreeSize != head.Size || seq == 0 {
		return fmt.Errorf("the inclusion proof %v is not for seq %d in a tree of %d", p, seq, head.Size)
	}
	proof, err := toHashes(p.Hashes, "inclusion proof")
	if err != nil {
		return err
	}
	root, err := toHash(head.MerkleRoot, "the head's merkle_root")
	if err != nil {
		return err
	}
	if err := tlog.CheckRecord(proof, int64(head.Size), root, int64(seq-1), leaf); err != nil {
		return fmt.Errorf("seq %d (leaf %d) in a tree of %d does not verify (tlog.CheckRecord): %v",
			seq, seq-1, head.Size, err)
	}
	return nil
}

func checkReceiptEntries(r *pb.Receipt, entries []*pb.LedgerEntry) error {
	for _, c := range []struct {
		seq  uint64
		typ  string
		leaf []byte
	}{{r.RequestedSeq, "forget.requested", r.RequestedLeafHash}, {r.AppliedSeq, "forget.applied", r.AppliedLeafHash}} {
		if c.seq > uint64(len(entries)) || entries[c.seq-1].Type != c.typ || !bytes.Equal(entries[c.seq-1].LeafHash, c.leaf) {
			return fmt.Errorf("the receipt's %s (seq %d) is not that entry of the ledger read", c.typ, c.seq)
		}
	}
	return nil
}

// ------------------------------------------------------------------------------------------ Merkle tree

// merkleTree holds tlog's stored hashes (every complete subtree), so any prefix's root is a TreeHash.
type merkleTree struct {
	stored []tlog.Hash
	leaves []tlog.Hash
	n      int64
}

func (t *merkleTree) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(t.stored)) {
			return nil, fmt.Errorf("stored hash %d is not held (%d held)", x, len(t.stored))
		}
		out[i] = t.stored[x]
	}
	return out, nil
}

func (t *merkleTree) append(leaf tlog.Hash) error {
	hs, err := tlog.StoredHashesForRecordHash(t.n, leaf, t)
	if err != nil {
		return err
	}
	t.stored, t.leaves, t.n = append(t.stored, hs...), append(t.leaves, leaf), t.n+1
	return nil
}

func (t *merkleTree) root(n int64) (tlog.Hash, error) {
	if n == 0 {
		return sha256.Sum256(nil), nil // RFC 6962's empty root; tlog.TreeHash answers all zeros
	}
	return tlog.TreeHash(n, t)
}

func toHash(b []byte, what string) (tlog.Hash, error) {
	var h tlog.Hash
	if len(b) != len(h) {
		return h, fmt.Errorf("%s is %d bytes, want %d", what, len(b), len(h))
	}
	copy(h[:], b)
	return h, nil
}

func toHashes(bs [][]byte, what string) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(bs))
	for i, b := range bs {
		h, err := toHash(b, fmt.Sprintf("%s hash %d", what, i))
		if err != nil {
			return nil, err
		}
		out[i] = h
	}
	return out, nil
}

// ------------------------------------------------------------------------------------------ C2SP formats

// checkpoint is a c2sp.org/tlog-checkpoint body; Chain is forgetd's forgetd-chain extension (nil without one).
type checkpoint struct {
	Origin     string
	Size       int64
	Root       tlog.Hash
	Extensions []string
	Chain      []byte
}

// strictBase64 decodes canonical standard base64 only, so that one value has one spelling.
func strictBase64(s, what string) ([]byte, error) {
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil || base64.StdEncoding.EncodeToString(b) != s {
		return nil, fmt.Errorf("%s is not canonical base64: %.60q", what, s)
	}
	return b, nil
}

func parseDecimal(s, what string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != s {
		return 0, fmt.Errorf("the %s must be a decimal in 0..2^63-1 without leading zeroes, got %.40q", what, s)
	}
	return n, nil
}

func parseCheckpoint(text string) (*checkpoint, error) {
	if !strings.HasSuffix(text, "\n") {
		return nil, errors.New("checkpoint text must end in a newline")
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 3 || lines[0] == "" {
		return nil, fmt.Errorf("a checkpoint has an origin, a size and a root hash line, got %q", text)
	}
	size, err := parseDecimal(lines[1], "tree size")
	if err != nil {
		return nil, err
	}
	root, err := strictBase64(lines[2], "the root hash")
	if err != nil || len(root) != sha256.Size {
		return nil, fmt.Errorf("the root hash line %.60q is not 32 bytes of base64 (%v)", lines[2], err)
	}
	cp := &checkpoint{Origin: lines[0], Size: size, Extensions: lines[3:]}
	copy(cp.Root[:], root)
	for i, line := range cp.Extensions {
		if line == "" {
			return nil, fmt.Errorf("checkpoint extension line %d is empty", i+1)
		}
		if name, value, _ := strings.Cut(line, " "); name == chainExtension {
			chain, err := strictBase64(value, "the "+chainExtension+" line")
			if err != nil || len(chain) != sha256.Size || cp.Chain != nil {
				return nil, fmt.Errorf("the %s line %.60q is repeated or not 32 bytes of base64", chainExtension, line)
			}
			cp.Chain = chain
		}
	}
	return cp, nil
}

// openCheckpoint verifies a signed checkpoint with note.Open against the one verifier key (whose name must
// be the checkpoint's origin, as forgetd signs them) and parses its text.
func openCheckpoint(msg []byte, vkey string) (*checkpoint, *note.Note, error) {
	if vkey == "" {
		return nil, nil, errors.New("there is a checkpoint but no verifier key: " +
			"GetModel sent none and -verifier-key is unset")
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, nil, fmt.Errorf("verifier key %q: %v", vkey, err)
	}
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		return nil, nil, fmt.Errorf("note.Open refused the checkpoint: %v", err)
	}
	cp, err := parseCheckpoint(n.Text)
	if err != nil {
		return nil, nil, err
	}
	if cp.Origin != v.Name() {
		return nil, nil, fmt.Errorf("checkpoint origin %q is not the verifier key's name %q", cp.Origin, v.Name())
	}
	return cp, n, nil
}

type tlogProof struct {
	index      int64
	hashes     []tlog.Hash
	checkpoint []byte
	extra      []byte
}

// parseTlogProof parses c2sp.org/tlog-proof@v1 strictly; the checkpoint after the first empty line is kept verbatim.
func parseTlogProof(data []byte) (*tlogProof, error) {
	head, cp, found := bytes.Cut(data, []byte("\n\n"))
	if !found {
		return nil, errors.New("a tlog-proof needs an empty line between the inclusion proof and the checkpoint")
	}
	lines := strings.Split(string(head), "\n")
	if lines[0] != proofHeader {
		return nil, fmt.Errorf("the first line must be %q, got %.60q", proofHeader, lines[0])
	}
	p, rest := &tlogProof{checkpoint: cp}, lines[1:]
	if len(rest) > 0 && strings.HasPrefix(rest[0], "extra ") {
		extra, err := strictBase64(strings.TrimPrefix(rest[0], "extra "), "the extra line")
		if err != nil || len(extra) == 0 {
			return nil, fmt.Errorf("the extra line %.60q is empty or not base64", rest[0])
		}
		p.extra, rest = extra, rest[1:]
	}
	if len(rest) == 0 || !strings.HasPrefix(rest[0], "index ") {
		return nil, errors.New("the line after the header (and extra) must be 'index <N>'")
	}
	index, err := parseDecimal(strings.TrimPrefix(rest[0], "index "), "index")
	if err != nil {
		return nil, err
	}
	if len(rest)-1 > maxProofHashes {
		return nil, fmt.Errorf("an inclusion proof has at most %d hashes, got %d", maxProofHashes, len(rest)-1)
	}
	p.index = index
	for i, line := range rest[1:] {
		h, err := strictBase64(line, fmt.Sprintf("proof hash %d", i))
		if err != nil || len(h) != sha256.Size {
			return nil, fmt.Errorf("proof hash %d %.60q is not 32 bytes of base64", i, line)
		}
		var x tlog.Hash
		copy(x[:], h)
		p.hashes = append(p.hashes, x)
	}
	return p, nil
}

// verifyTlogProof checks the checkpoint's signature first, then leaf `leaf` at the proof's index against its root.
func verifyTlogProof(data []byte, vkey string, leaf tlog.Hash) (*tlogProof, *checkpoint, *note.Note, error) {
	p, err := parseTlogProof(data)
	if err != nil {
		return nil, nil, nil, err
	}
	cp, n, err := openCheckpoint(p.checkpoint, vkey)
	if err != nil {
		return nil, nil, nil, err
	}
	if p.index >= cp.Size {
		return nil, nil, nil, fmt.Errorf("index %d out of range for the checkpoint's tree size %d", p.index, cp.Size)
	}
	if err := tlog.CheckRecord(p.hashes, cp.Size, cp.Root, p.index, leaf); err != nil {
		return nil, nil, nil, fmt.Errorf("leaf index %d in tree size %d does not verify (tlog.CheckRecord): %v",
			p.index, cp.Size, err)
	}
	return p, cp, n, nil
}

type tlogProofReport struct {
	File          string `json:"file"`
	Index         int64  `json:"index"`
	Seq           int64  `json:"seq"`
	TreeSize      int64  `json:"tree_size"`
	Origin        string `json:"origin"`
	Cosignatures  int    `json:"unverified_signatures"`
	RootOfLedger  bool   `json:"root_is_the_ledgers"`
	LeafFromEntry bool   `json:"leaf_from_the_ledger"`
}

// verifyProofAgainstLedger checks a tlog-proof file for an entry of the live ledger: the leaf hash is the one
// recomputed from that entry's envelope, and the checkpoint's root must be the ledger's root at its size.
func verifyProofAgainstLedger(path, vkey string, tree *merkleTree) (*tlogProofReport, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	p, err := parseTlogProof(data)
	if err != nil {
		return nil, fmt.Errorf("-tlog-proof %s: %v", path, err)
	}
	if p.index >= tree.n {
		return nil, fmt.Errorf("-tlog-proof %s: index %d is past the ledger read (%d entries)", path, p.index, tree.n)
	}
	_, cp, n, err := verifyTlogProof(data, vkey, tree.leaves[p.index])
	if err != nil {
		return nil, fmt.Errorf("-tlog-proof %s: %v", path, err)
	}
	if cp.Size > tree.n {
		return nil, fmt.Errorf("-tlog-proof %s: its checkpoint is of size %d, the ledger has %d entries",
			path, cp.Size, tree.n)
	}
	root, err := tree.root(cp.Size)
	if err != nil || root != cp.Root {
		return nil, fmt.Errorf("-tlog-proof %s: its checkpoint root %s is not the ledger's root at size %d, %s",
			path, cp.Root, cp.Size, root)
	}
	return &tlogProofReport{path, p.index, p.index + 1, cp.Size, cp.Origin, len(n.UnverifiedSigs), true, true}, nil
}

// ------------------------------------------------------------------------------------------ offline proofs

type proofItem struct {
	TlogProof   string `json:"tlog_proof"`
	VerifierKey string `json:"verifier_key"`
	LeafHashHex string `json:"leaf_hash_hex"`
}

type proofResult struct {
	Accepted bool   `json:"accepted"`
	Error    string `json:"error,omitempty"`
}

type proofsReport struct {
	Mode     string        `json:"mode"`
	Items    int           `json:"items"`
	Accepted int           `json:"accepted"`
	Refused  int           `json:"refused"`
	Results  []proofResult `json:"results"`
}

func verifyProofsFile(path string) (*proofsReport, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var items []proofItem
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&items); err != nil {
		return nil, fmt.Errorf("-verify-proofs %s: want a JSON list of {tlog_proof, verifier_key, leaf_hash_hex}: %v",
			path, err)
	}
	r := &proofsReport{Mode: "verify-proofs", Items: len(items), Results: make([]proofResult, len(items))}
	for i, item := range items {
		leaf, err := hex.DecodeString(item.LeafHashHex)
		if err == nil {
			var h tlog.Hash
			if h, err = toHash(leaf, "leaf_hash_hex"); err == nil {
				_, _, _, err = verifyTlogProof([]byte(item.TlogProof), item.VerifierKey, h)
			}
		}
		if err != nil {
			r.Results[i], r.Refused = proofResult{Error: err.Error()}, r.Refused+1
		} else {
			r.Results[i], r.Accepted = proofResult{Accepted: true}, r.Accepted+1
		}
	}
	return r, nil
}
