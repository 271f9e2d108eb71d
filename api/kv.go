package api

import (
	"strings"
	"unicode/utf8"
)

// The configuration store: a watched key-value store per tenant
// (DESIGN.md, "Configuration"; docs/DECISIONS.md, "Configuration store").
//
// A key is a path: 1 to MaxKeyLen bytes of '/'-separated segments, each of
// [A-Za-z0-9._-] and none empty, "." or ".."; at most MaxKeySegments of
// them. No leading or trailing '/'. A key is safe in a URL path as it is,
// in a shell and on a terminal.
//
// A value is bytes. In JSON it travels as base64 ("value"), and, when it is
// valid UTF-8, also as "text", so that a person reading an answer sees it.
// Each key carries etcd's three numbers: CreateIndex (the Raft index of
// the entry that created it), ModIndex (of the entry that last wrote it) and
// Version (the writes since it was created, 1 for a new key).
//
// A prefix read or watch on "app/cfg" takes the subtree: the key "app/cfg"
// itself and every key under "app/cfg/", never "app/cfgx". The empty prefix
// takes every key.

// Limits of the configuration store.
const (
	// MaxKeyLen is the longest key, in bytes.
	MaxKeyLen = 512
	// MaxKeySegments is how many '/'-separated segments a key may have.
	// Each ancestor of a key costs the tenant's replicas an index entry
	// (the subtree's last change, which prefix reads block on), so depth
	// is bounded.
	MaxKeySegments = 32
	// MaxTxnOps bounds a transaction's compares, puts and deletes together.
	MaxTxnOps = 64
	// MaxKVPage is the most keys one prefix read answers (its limit), and
	// DefaultKVPage its default.
	MaxKVPage     = 1000
	DefaultKVPage = 1000
)

// HeaderModIndex carries a key's mod_index on a raw read (?raw=true), whose
// body is the value itself.
const HeaderModIndex = "X-Rafting-Mod-Index"

// KV is one key as reads answer it. Value is authoritative (base64 in
// JSON); Text is the same bytes as a string when they are valid UTF-8.
// SessionTag names the session that owns an ephemeral key (which is
// deleted when that session ends); it is empty for a permanent key.
type KV struct {
	Key         string  `json:"key"`
	Text        *string `json:"text,omitempty"`
	Value       []byte  `json:"value"`
	CreateIndex uint64  `json:"create_index"`
	ModIndex    uint64  `json:"mod_index"`
	Version     uint64  `json:"version"`
	SessionTag  string  `json:"session_tag,omitempty"`
}

// WithText sets Text from Value when it is valid UTF-8, and makes a nil
// Value empty (JSON "", never null).
func (kv *KV) WithText() *KV {
	if kv.Value == nil {
		kv.Value = []byte{}
	}
	if utf8.Valid(kv.Value) {
		s := string(kv.Value)
		kv.Text = &s
	} else {
		kv.Text = nil
	}
	return kv
}

// KVPutRequest is the JSON form of PUT /v1/tenants/{t}/kv/{key...} (sent
// with Content-Type: application/json; any other body is the value
// itself, raw). Exactly one of Text and Value is set. IfIndex makes the
// write a compare-and-set on the key's mod_index (0: only if the key does
// not exist); Session makes the key ephemeral, owned by that session. Both
// may be given as query parameters instead (?if_index=, ?session=), not
// both ways at once.
type KVPutRequest struct {
	Text    *string `json:"text,omitempty"`
	Value   []byte  `json:"value,omitempty"`
	IfIndex *uint64 `json:"if_index,omitempty"`
	Session string  `json:"session,omitempty"`
}

// KVPutResponse answers a PUT: the index it was applied at and the key as
// written.
type KVPutResponse struct {
	Index uint64 `json:"index"`
	KV    KV     `json:"kv"`
}

// KVResponse answers GET /v1/tenants/{t}/kv/{key...}: one key. A missing
// key is 404 not_found. Index is the replica's applied index when the read
// was served (pass it back as ?index= to block for the next change).
type KVResponse struct {
	Index uint64 `json:"index"`
	KV    KV     `json:"kv"`
}

// KVListResponse answers GET .../kv/{prefix...}?prefix=true: the subtree's
// keys in byte order, at most ?limit= of them (and about 1 MiB of values),
// starting at ?start= (inclusive). Next, when set, is the ?start= of the
// next page. Each page is read at its own Index.
type KVListResponse struct {
	Index uint64 `json:"index"`
	KVs   []KV   `json:"kvs"`
	Next  string `json:"next,omitempty"`
}

// KVDeleteResponse answers a DELETE: the index it was applied at and how
// many keys it removed (0 for a key that did not exist: still 200, as
// every DELETE of a missing thing succeeds).
type KVDeleteResponse struct {
	Index   uint64 `json:"index"`
	Deleted int    `json:"deleted"`
}

// KVTxnRequest is the body of POST /v1/tenants/{t}/kv:txn: when every
// compare holds, every put and delete is applied, all in one Raft entry;
// when one fails, nothing is (409 conflict naming the first failed
// compare). Compares, puts and deletes are at most MaxTxnOps together; a
// key is put or deleted at most once.
type KVTxnRequest struct {
	Compare []KVCompare   `json:"compare,omitempty"`
	Put     []KVTxnPut    `json:"put,omitempty"`
	Delete  []KVTxnDelete `json:"delete,omitempty"`
}

// KVCompare is one condition of a transaction, on one key: exactly one of
// ModIndex (equal; 0: the key does not exist), Version (equal; 0: does not
// exist), Exists, or Text/Value (the value equals these bytes; a missing
// key never does).
type KVCompare struct {
	Key      string  `json:"key"`
	ModIndex *uint64 `json:"mod_index,omitempty"`
	Version  *uint64 `json:"version,omitempty"`
	Exists   *bool   `json:"exists,omitempty"`
	Text     *string `json:"text,omitempty"`
	Value    []byte  `json:"value,omitempty"`
}

// KVTxnPut is one put of a transaction: exactly one of Text and Value;
// Session makes the key ephemeral.
type KVTxnPut struct {
	Key     string  `json:"key"`
	Text    *string `json:"text,omitempty"`
	Value   []byte  `json:"value,omitempty"`
	Session string  `json:"session,omitempty"`
}

// KVTxnDelete is one delete of a transaction (of one key: a transaction
// deletes no subtree).
type KVTxnDelete struct {
	Key string `json:"key"`
}

// KVTxnResponse answers a transaction that applied.
type KVTxnResponse struct {
	Succeeded bool   `json:"succeeded"`
	Index     uint64 `json:"index"`
}

// KVConflict is the detail of a 409 conflict of the configuration store:
// the key whose condition failed, its mod_index now (0: it does not
// exist), and, for a transaction, the position of the failed compare.
type KVConflict struct {
	Key      string `json:"key"`
	ModIndex uint64 `json:"mod_index"`
	Compare  *int   `json:"compare,omitempty"`
}

// ValidateKey checks a key (see the package comment above). The error is a
// 400 naming field.
func ValidateKey(field, key string) error {
	if len(key) == 0 || len(key) > MaxKeyLen {
		return BadField(field, "must be 1 to %d bytes, got %d", MaxKeyLen, len(key))
	}
	return validatePath(field, key)
}

// ValidateKeyPrefix checks the key of a prefix read, watch or delete: a
// key, or "" for every key.
func ValidateKeyPrefix(field, prefix string) error {
	if prefix == "" {
		return nil
	}
	return ValidateKey(field, prefix)
}

func validatePath(field, key string) error {
	segments, start := 0, 0
	for i := 0; i <= len(key); i++ {
		if i < len(key) && key[i] != '/' {
			if !nameByte(key[i]) {
				return BadField(field, "character %q at %d is not one of [A-Za-z0-9._-] or /", key[i], i)
			}
			continue
		}
		seg := key[start:i]
		switch seg {
		case "":
			return BadField(field, "empty segment at %d (no leading, trailing or double /)", start)
		case ".", "..":
			return BadField(field, "segment %q at %d is not a name", seg, start)
		}
		if segments++; segments > MaxKeySegments {
			return BadField(field, "more than %d segments", MaxKeySegments)
		}
		start = i + 1
	}
	return nil
}

// KeyParent is a key's parent subtree: "a/b" for "a/b/c", "" for "a".
func KeyParent(key string) string {
	if i := strings.LastIndexByte(key, '/'); i >= 0 {
		return key[:i]
	}
	return ""
}

// InSubtree reports whether key is in the subtree of prefix: the key
// itself, a key under prefix + "/", or any key for the empty prefix.
func InSubtree(key, prefix string) bool {
	return prefix == "" || key == prefix || len(key) > len(prefix) && key[len(prefix)] == '/' && key[:len(prefix)] == prefix
}
