// Command kat prints, as JSON on stdout, known-answer vectors for forgetd's C2SP code (ledger/note.py,
// ledger/checkpoint.py, ledger/tlogproof.py, ledger/cosignature.py, ledger/witness.py), made independently
// of it by Go's golang.org/x/mod/sumdb/note (signed notes) and golang.org/x/mod/sumdb/tlog (RFC 6962 trees
// and proofs). Everything is deterministic (fixed key seeds, Ed25519, fixed timestamps), so the output is
// byte for byte reproducible and tests/data/c2sp_note_vectors.json is exactly this program's output.
//
// It needs no network: run it in GOPATH mode against Debian's packaged sources
// (apt-get install golang-go golang-golang-x-mod-dev):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go run ./tests/interop/go/kat > tests/data/c2sp_note_vectors.json
//
// x/mod has no cosignature (signature type 0x04) support, so the cosigner below is a note.Signer written
// here from c2sp.org/tlog-cosignature; note.Sign still formats its signature lines.
package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const (
	logName     = "forgetd/kat-log"
	otherName   = "example.com/other"
	witnessName = "witness.example/kat"
	numLeaves   = 13
)

type keyVector struct {
	Desc      string `json:"desc"`
	Name      string `json:"name"`
	Type      int    `json:"type"`
	SeedHex   string `json:"seed_hex"`
	PublicHex string `json:"public_key_hex"`
	KeyIDHex  string `json:"key_id_hex"`
	Vkey      string `json:"vkey"`
}

type noteVector struct {
	Desc    string   `json:"desc"`
	Text    string   `json:"text"`
	Signers []string `json:"signers"`
	Signed  string   `json:"signed"`
}

type openVector struct {
	Desc           string   `json:"desc"`
	MsgB64         string   `json:"msg_b64"`
	Verifiers      []string `json:"verifiers"`
	WantError      string   `json:"want_error"`
	GoError        string   `json:"go_error"`
	WantText       string   `json:"want_text"`
	WantSigners    []string `json:"want_signers"`
	WantUnverified []string `json:"want_unverified"`
}

type rootVector struct {
	Size int64  `json:"size"`
	Root string `json:"root"`
}

type inclusionVector struct {
	Index int64    `json:"index"`
	Size  int64    `json:"size"`
	Proof []string `json:"proof"`
}

type consistencyVector struct {
	Old   int64    `json:"old"`
	New   int64    `json:"new"`
	Proof []string `json:"proof"`
}

type checkpointVector struct {
	Desc       string   `json:"desc"`
	Origin     string   `json:"origin"`
	Size       int64    `json:"size"`
	Root       string   `json:"root"`
	Extensions []string `json:"extensions"`
	Text       string   `json:"text"`
	Signed     string   `json:"signed"`
}

type tlogProofVector struct {
	Desc     string `json:"desc"`
	Index    int64  `json:"index"`
	Leaf     string `json:"leaf"`
	ExtraB64 string `json:"extra_b64"`
	Proof    string `json:"proof"`
}

type cosignatureVector struct {
	Desc       string `json:"desc"`
	Timestamp  uint64 `json:"timestamp"`
	Checkpoint string `json:"checkpoint"`
	Message    string `json:"message"`
	Line       string `json:"line"`
}

type witnessVector struct {
	Desc        string `json:"desc"`
	Timestamp   uint64 `json:"timestamp"`
	Body        string `json:"body"`
	WantStatus  int    `json:"want_status"`
	WantBody    string `json:"want_body"`
	ContentType string `json:"content_type"`
}

type vectors struct {
	Desc         string              `json:"desc"`
	ProducedBy   string              `json:"produced_by"`
	Keys         []keyVector         `json:"keys"`
	Notes        []noteVector        `json:"notes"`
	Open         []openVector        `json:"open"`
	Leaves       []string            `json:"leaves"`
	Roots        []rootVector        `json:"roots"`
	Inclusion    []inclusionVector   `json:"inclusion"`
	Consistency  []consistencyVector `json:"consistency"`
	Checkpoints  []checkpointVector  `json:"checkpoints"`
	TlogProofs   []tlogProofVector   `json:"tlog_proofs"`
	Cosignatures []cosignatureVector `json:"cosignatures"`
	Witness      []witnessVector     `json:"witness"`
}

func seed(label string) []byte {
	s := sha256.Sum256([]byte("forgetd c2sp kat: " + label))
	return s[:]
}

func keyHash(name string, typ byte, pub []byte) uint32 {
	h := sha256.New()
	h.Write([]byte(name + "\n"))
	h.Write([]byte{typ})
	h.Write(pub)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "kat:", err)
		os.Exit(1)
	}
}

// ed25519Key builds the note signer key string from a seed, the way note.GenerateKey encodes one.
func ed25519Key(name, label string) (note.Signer, note.Verifier, keyVector) {
	priv := ed25519.NewKeyFromSeed(seed(label))
	pub := priv.Public().(ed25519.PublicKey)
	h := keyHash(name, 1, pub)
	skey := fmt.Sprintf("PRIVATE+KEY+%s+%08x+%s", name, h,
		base64.StdEncoding.EncodeToString(append([]byte{1}, seed(label)...)))
	signer, err := note.NewSigner(skey)
	check(err)
	vkey, err := note.NewEd25519VerifierKey(name, pub)
	check(err)
	verifier, err := note.NewVerifier(vkey)
	check(err)
	kv := keyVector{"an Ed25519 note key (type 0x01); seed = SHA-256(\"forgetd c2sp kat: " + label + "\")",
		name, 1, fmt.Sprintf("%x", seed(label)), fmt.Sprintf("%x", []byte(pub)), fmt.Sprintf("%08x", h), vkey}
	return signer, verifier, kv
}

// cosigner implements c2sp.org/tlog-cosignature's Ed25519 cosignature/v1 (signature type 0x04).
type cosigner struct {
	name string
	priv ed25519.PrivateKey
	time uint64
}

func (c *cosigner) Name() string { return c.name }
func (c *cosigner) KeyHash() uint32 {
	return keyHash(c.name, 4, c.priv.Public().(ed25519.PublicKey))
}
func (c *cosigner) Sign(msg []byte) ([]byte, error) {
	var ts [8]byte
	binary.BigEndian.PutUint64(ts[:], c.time)
	return append(ts[:], ed25519.Sign(c.priv, cosignedMessage(c.time, msg))...), nil
}

func cosignedMessage(t uint64, text []byte) []byte {
	return append([]byte(fmt.Sprintf("cosignature/v1\ntime %d\n", t)), text...)
}

func newCosigner() (*cosigner, keyVector) {
	priv := ed25519.NewKeyFromSeed(seed("witness key"))
	pub := priv.Public().(ed25519.PublicKey)
	c := &cosigner{name: witnessName, priv: priv}
	h := c.KeyHash()
	vkey := fmt.Sprintf("%s+%08x+%s", witnessName, h, base64.StdEncoding.EncodeToString(append([]byte{4}, pub...)))
	kv := keyVector{"an Ed25519 cosigner key (type 0x04, c2sp.org/tlog-cosignature); seed = SHA-256(\"forgetd c2sp kat: witness key\")",
		witnessName, 4, fmt.Sprintf("%x", seed("witness key")), fmt.Sprintf("%x", []byte(pub)), fmt.Sprintf("%08x", h), vkey}
	return c, kv
}

func sign(text string, signers ...note.Signer) string {
	msg, err := note.Sign(&note.Note{Text: text}, signers...)
	check(err)
	return string(msg)
}

func verdict(err error) string {
	var unverified *note.UnverifiedNoteError
	var invalid *note.InvalidSignatureError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &unverified):
		return "unverified"
	case errors.As(err, &invalid):
		return "invalid_signature"
	case err.Error() == "malformed note":
		return "malformed"
	}
	return "other: " + err.Error()
}

func openCase(desc string, msg []byte, verifiers []note.Verifier, vkeys []string) openVector {
	n, err := note.Open(msg, note.VerifierList(verifiers...))
	ov := openVector{Desc: desc, MsgB64: base64.StdEncoding.EncodeToString(msg), Verifiers: vkeys,
		WantError: verdict(err), WantSigners: []string{}, WantUnverified: []string{}}
	if err != nil {
		ov.GoError = err.Error()
	}
	if n != nil {
		ov.WantText = n.Text
		for _, s := range n.Sigs {
			ov.WantSigners = append(ov.WantSigners, s.Name)
		}
		for _, s := range n.UnverifiedSigs {
			ov.WantUnverified = append(ov.WantUnverified, s.Name)
		}
	}
	return ov
}

type memTree struct{ hashes []tlog.Hash }

func (m *memTree) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		out[i] = m.hashes[x]
	}
	return out, nil
}

func (m *memTree) root(n int64) tlog.Hash {
	if n == 0 {
		return sha256.Sum256(nil) // RFC 6962's empty root; tlog.TreeHash answers all zeros for n = 0
	}
	h, err := tlog.TreeHash(n, m)
	check(err)
	return h
}

func b64s(hs []tlog.Hash) []string {
	out := []string{}
	for _, h := range hs {
		out = append(out, h.String())
	}
	return out
}

func checkpointText(origin string, n int64, root tlog.Hash, ext ...string) string {
	text := fmt.Sprintf("%s\n%d\n%s\n", origin, n, root)
	for _, e := range ext {
		text += e + "\n"
	}
	return text
}

func main() {
	logSigner, logVerifier, logKey := ed25519Key(logName, "log key")
	otherSigner, otherVerifier, otherKey := ed25519Key(otherName, "other key")
	cos, witnessKey := newCosigner()
	v := vectors{
		Desc: "C2SP signed-note, tlog-checkpoint, tlog-proof, tlog-cosignature and tlog-witness known answers, " +
			"made by Go's golang.org/x/mod/sumdb/note and sumdb/tlog, independently of forgetd's Python code",
		ProducedBy: "GO111MODULE=off GOPATH=/usr/share/gocode go run ./tests/interop/go/kat " +
			"(Go 1.19, golang.org/x/mod v0.7.0 from Debian's golang-golang-x-mod-dev)",
		Keys: []keyVector{logKey, otherKey, witnessKey},
	}
	v.Notes = notes(logSigner, otherSigner)
	v.Open = opens(logSigner, otherSigner, logVerifier, otherVerifier, logKey.Vkey, otherKey.Vkey)

	tree := &memTree{}
	for i := int64(0); i < numLeaves; i++ {
		data := fmt.Sprintf("leaf %d", i)
		v.Leaves = append(v.Leaves, data)
		hs, err := tlog.StoredHashes(i, []byte(data), tree)
		check(err)
		tree.hashes = append(tree.hashes, hs...)
	}
	for n := int64(0); n <= numLeaves; n++ {
		v.Roots = append(v.Roots, rootVector{n, tree.root(n).String()})
	}
	for _, p := range [][2]int64{{0, 1}, {0, 2}, {1, 2}, {3, 5}, {4, 5}, {0, 8}, {7, 8}, {5, 13}, {12, 13}, {6, 11}} {
		proof, err := tlog.ProveRecord(p[1], p[0], tree)
		check(err)
		v.Inclusion = append(v.Inclusion, inclusionVector{p[0], p[1], b64s(proof)})
	}
	for _, p := range [][2]int64{{1, 1}, {1, 2}, {2, 5}, {3, 7}, {4, 8}, {5, 8}, {6, 13}, {8, 13}, {12, 13}} {
		proof, err := tlog.ProveTree(p[1], p[0], tree)
		check(err)
		v.Consistency = append(v.Consistency, consistencyVector{p[0], p[1], b64s(proof)})
	}
	v.Checkpoints = checkpoints(tree, logSigner)
	v.TlogProofs = tlogProofs(tree, logSigner, cos)
	v.Cosignatures = cosignatures(tree, logSigner, cos)
	v.Witness = witnessRequests(tree, logSigner, otherSigner, cos)

	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	check(enc.Encode(v))
}

func notes(log, other note.Signer) []noteVector {
	texts := []struct{ desc, text string }{
		{"one line", "hello, transparency\n"},
		{"several lines, one empty: the text ends at the last blank line", "line one\n\nline three\n"},
		{"non-ASCII text (UTF-8, no control characters)", "Ognuno sta solo sul cuor della terra\ned è subito sera — ✓\n"},
		{"just a newline", "\n"},
	}
	out := []noteVector{}
	for _, t := range texts {
		out = append(out, noteVector{t.desc, t.text, []string{logName}, sign(t.text, log)})
	}
	out = append(out, noteVector{"two signers, in the order given", "two signatures\n",
		[]string{logName, otherName}, sign("two signatures\n", log, other)})
	return out
}

func opens(log, other note.Signer, logV, otherV note.Verifier, logVkey, otherVkey string) []openVector {
	good := []byte(sign("hello, transparency\n", log))
	both := []byte(sign("hello, transparency\n", log, other))
	lv, lk := []note.Verifier{logV}, []string{logVkey}
	bothV, bothK := []note.Verifier{logV, otherV}, []string{logVkey, otherVkey}
	sigLine := good[bytes.LastIndex(good, []byte("\n\n"))+2:]
	withSigs := func(text string, lines ...string) []byte { return []byte(text + "\n" + strings.Join(lines, "")) }
	raw, _ := base64.StdEncoding.DecodeString(strings.Fields(string(sigLine))[2])
	raw[10] ^= 1
	flipSig := withSigs("hello, transparency\n", fmt.Sprintf("— %s %s\n", logName, base64.StdEncoding.EncodeToString(raw)))
	raw[10] ^= 1
	raw[0] ^= 0xff // the key ID no longer matches: an unknown key
	otherID := withSigs("hello, transparency\n", fmt.Sprintf("— %s %s\n", logName, base64.StdEncoding.EncodeToString(raw)))
	many := "hello, transparency\n\n"
	for i := 0; i < 101; i++ {
		many += fmt.Sprintf("— k%d AAAAAAE=\n", i)
	}
	return []openVector{
		openCase("a valid note signed by the known key", good, lv, lk),
		openCase("two signatures, both keys known", both, bothV, bothK),
		openCase("two signatures, one key unknown: it is ignored (listed as unverified)", both, lv, lk),
		openCase("no known key signed it", good, []note.Verifier{otherV}, []string{otherVkey}),
		openCase("no verifiers at all", good, nil, []string{}),
		openCase("the text changed after signing", bytes.Replace(good, []byte("hello"), []byte("jello"), 1), lv, lk),
		openCase("one signature bit flipped", flipSig, lv, lk),
		openCase("the right name with another key ID: an unknown key, ignored", otherID, lv, lk),
		openCase("the same signature line twice: counted once", append(append([]byte{}, good...), sigLine...), lv, lk),
		openCase("a blank line inside the text: the last one separates", []byte(sign("a\n\nb\n", log)), lv, lk),
		openCase("invalid UTF-8 in the text", withSigs("hello, \xff\n", string(sigLine)), lv, lk),
		openCase("a tab (control character) in the text", withSigs("hello,\ttransparency\n", string(sigLine)), lv, lk),
		openCase("a carriage return in the text", withSigs("hello, transparency\r\n", string(sigLine)), lv, lk),
		openCase("DEL (U+007F) is not below U+0020: allowed by the format", []byte(sign("del \x7f\n", log)), lv, lk),
		openCase("no blank line before the signatures", []byte("hello, transparency\n"+string(sigLine)), lv, lk),
		openCase("the last signature line lacks its newline", bytes.TrimSuffix(good, []byte("\n")), lv, lk),
		openCase("a signature line with a hyphen, not an em dash", withSigs("hello, transparency\n", "- "+string(sigLine[len("— "):])), lv, lk),
		openCase("no signature lines after the blank line", []byte("hello, transparency\n\n"), lv, lk),
		openCase("base64 that does not decode", withSigs("hello, transparency\n", "— "+logName+" !!!!\n"), lv, lk),
		openCase("a signature of 4 bytes (a key ID, nothing signed)", withSigs("hello, transparency\n", "— "+logName+" AAAAAA==\n"), lv, lk),
		openCase("a key name with a plus", withSigs("hello, transparency\n", "— a+b AAAAAAE=\n"), lv, lk),
		openCase("an empty key name", withSigs("hello, transparency\n", "—  AAAAAAE=\n"), lv, lk),
		openCase("101 signature lines: more than the limit", []byte(many), lv, lk),
		openCase("an empty message", []byte{}, lv, lk),
	}
}

func checkpoints(tree *memTree, log note.Signer) []checkpointVector {
	cases := []struct {
		desc string
		n    int64
		ext  []string
	}{
		{"the empty tree (size 0, SHA-256 of the empty string)", 0, nil},
		{"one leaf", 1, nil},
		{"13 leaves", 13, nil},
		{"with forgetd's chain hash extension line", 13, []string{"forgetd-chain " + base64.StdEncoding.EncodeToString(seed("chain"))}},
	}
	out := []checkpointVector{}
	for _, c := range cases {
		root := tree.root(c.n)
		text := checkpointText(logName, c.n, root, c.ext...)
		ext := c.ext
		if ext == nil {
			ext = []string{}
		}
		out = append(out, checkpointVector{c.desc, logName, c.n, root.String(), ext, text, sign(text, log)})
	}
	// tlog's own formatter: a checkpoint whose origin is "go.sum database tree" (spaces are allowed in origins).
	goText := string(tlog.FormatTree(tlog.Tree{N: 5, Hash: tree.root(5)}))
	out = append(out, checkpointVector{"tlog.FormatTree's go.sum tree note (origin with spaces), unsigned",
		"go.sum database tree", 5, tree.root(5).String(), []string{}, goText, ""})
	return out
}

func tlogProof(tree *memTree, log note.Signer, n, size int64, extra []byte, cosigners ...note.Signer) tlogProofVector {
	proof, err := tlog.ProveRecord(size, n, tree)
	check(err)
	text := "c2sp.org/tlog-proof@v1\n"
	if extra != nil {
		text += "extra " + base64.StdEncoding.EncodeToString(extra) + "\n"
	}
	text += fmt.Sprintf("index %d\n", n)
	for _, h := range proof {
		text += h.String() + "\n"
	}
	text += "\n" + sign(checkpointText(logName, size, tree.root(size)), append([]note.Signer{log}, cosigners...)...)
	return tlogProofVector{Index: n, Leaf: fmt.Sprintf("leaf %d", n), ExtraB64: base64.StdEncoding.EncodeToString(extra), Proof: text}
}

func tlogProofs(tree *memTree, log note.Signer, cos *cosigner) []tlogProofVector {
	cos.time = 1700000000
	cases := []tlogProofVector{
		tlogProof(tree, log, 5, 13, nil),
		tlogProof(tree, log, 0, 1, nil),
		tlogProof(tree, log, 12, 13, []byte("forgetd extra data")),
		tlogProof(tree, log, 3, 8, nil, cos),
	}
	descs := []string{"leaf 5 of 13", "the only leaf of a one-leaf tree (no proof lines)",
		"with an extra line", "leaf 3 of 8, the checkpoint cosigned by the witness"}
	for i := range cases {
		cases[i].Desc = descs[i]
	}
	return cases
}

func cosignatures(tree *memTree, log note.Signer, cos *cosigner) []cosignatureVector {
	out := []cosignatureVector{}
	for _, c := range []struct {
		t    uint64
		n    int64
		desc string
	}{{1679315147, 13, "13 leaves at the spec's example time"}, {1, 0, "the empty tree at time 1"}} {
		cos.time = c.t
		text := checkpointText(logName, c.n, tree.root(c.n))
		signed := sign(text, log)
		both := sign(text, log, cos)
		line := both[strings.LastIndex(both, "\n— "+witnessName)+1:]
		out = append(out, cosignatureVector{c.desc, c.t, signed, string(cosignedMessage(c.t, []byte(text))), line})
	}
	return out
}

// witnessRequests is a sequence of add-checkpoint requests for one fresh witness trusting only logName's
// key; want_status and want_body are what c2sp.org/tlog-witness requires, want_body of a 200 is the
// cosignature this program's cosigner makes at that timestamp.
func witnessRequests(tree *memTree, log, other note.Signer, cos *cosigner) []witnessVector {
	body := func(old int64, proof []tlog.Hash, signedCheckpoint string) string {
		b := fmt.Sprintf("old %d\n", old)
		for _, h := range proof {
			b += h.String() + "\n"
		}
		return b + "\n" + signedCheckpoint
	}
	cp := func(n int64, s ...note.Signer) string { return sign(checkpointText(logName, n, tree.root(n)), s...) }
	proveTree := func(n, t int64) []tlog.Hash {
		p, err := tlog.ProveTree(t, n, tree)
		check(err)
		return p
	}
	ok := func(desc string, t uint64, b string, n int64) witnessVector {
		cos.time = t
		both := sign(checkpointText(logName, n, tree.root(n)), log, cos)
		return witnessVector{desc, t, b, 200, both[strings.LastIndex(both, "\n— "+witnessName)+1:], ""}
	}
	size := func(n int64) string { return fmt.Sprintf("%d\n", n) }
	badProof := proveTree(5, 8)
	badProof[0][0] ^= 1
	return []witnessVector{
		ok("first checkpoint: old 0, no proof", 1700000001, body(0, nil, cp(5, log)), 5),
		{"old 0 again: the witness is at 5", 1700000002, body(0, nil, cp(8, log)), 409, size(5), "text/x.tlog.size"},
		{"a consistency proof with one bit flipped", 1700000003, body(5, badProof, cp(8, log)), 422, "", ""},
		{"signed by a key the witness does not trust for this origin", 1700000004, body(5, proveTree(5, 8), cp(8, other)), 403, "", ""},
		{"an origin the witness does not know", 1700000005, body(0, nil, sign(checkpointText("example.com/unknown", 1, tree.root(1)), log)), 404, "", ""},
		{"old size above the checkpoint's size", 1700000006, body(8, nil, cp(5, log)), 400, "", ""},
		ok("5 -> 8 with tlog.ProveTree's proof", 1700000007, body(5, proveTree(5, 8), cp(8, log)), 8),
		ok("8 -> 8, same root, empty proof: cosigned again", 1700000008, body(8, nil, cp(8, log)), 8),
		ok("8 -> 13", 1700000009, body(8, proveTree(8, 13), cp(13, log)), 13),
		{"8 -> 13 again, stale: the witness is at 13", 1700000010, body(8, proveTree(8, 13), cp(13, log)), 409, size(13), "text/x.tlog.size"},
	}
}
