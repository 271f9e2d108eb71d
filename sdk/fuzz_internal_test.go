package sdk

import (
	"net"
	"strings"
	"testing"

	"github.com/rafting/rafting/api"
)

// FuzzDecodeService: any answer body decodes or fails cleanly; a decoded
// instance never has a negative weight from a missing field.
func FuzzDecodeService(f *testing.F) {
	f.Add([]byte(`{"index":5,"modify_index":5,"service":"web","instances":[{"id":"a","address":"x","mode":"farm","state":"ready","weight":0}],"master":null,"policy":{"cold_start":{"min_ready":1,"settle_ms":0}}}`))
	f.Add([]byte(`{"instances":[{"id":"a"},{"id":"b","weight":7}]}`))
	f.Add([]byte(`{"instances":[{"id":"a","meta":{"weight":"1"}}]}`))
	f.Add([]byte(`not json`))
	f.Add([]byte(`{"instances":null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := decodeService(body, nil)
		if err != nil {
			return
		}
		if r == nil {
			t.Fatal("nil answer without an error")
		}
	})
}

// FuzzSplitServers: RAFTING_SERVERS parses into clean host:port entries.
func FuzzSplitServers(f *testing.F) {
	f.Add("127.0.0.1:7070,127.0.0.1:7170")
	f.Add(" http://a:1/ , ,https://b:2")
	f.Add(",,,")
	f.Fuzz(func(t *testing.T, v string) {
		for _, s := range splitServers(v) {
			if s == "" || strings.Contains(s, ",") || s != strings.TrimSpace(s) {
				t.Fatalf("splitServers(%q) gave %q", v, s)
			}
		}
	})
}

// FuzzDecodeError: every error answer becomes an error usable with
// errors.Is, whatever the body.
func FuzzDecodeError(f *testing.F) {
	f.Add(409, []byte(`{"error":{"code":"quota_exceeded","quota":"max_instances","limit":1,"used":1}}`))
	f.Add(503, []byte(`<html>`))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		if e := api.Decode(status, body, ""); e == nil || e.Unwrap() == nil {
			t.Fatalf("Decode(%d, %q) = %v", status, body, e)
		}
	})
}

// FuzzServerList: any server list answer decodes or fails cleanly, and
// only host:port entries are kept.
func FuzzServerList(f *testing.F) {
	f.Add([]byte(`{"servers":["10.0.0.1:7070","[::1]:7070"]}`))
	f.Add([]byte(`{"servers":["http://x:1/","nohost",""]}`))
	f.Add([]byte(`{"servers":null}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var l api.ServerList
		if jsonUnmarshal(body, &l) != nil {
			return
		}
		for _, s := range usableServers(l.Servers) {
			if _, _, err := net.SplitHostPort(s); err != nil || strings.Contains(s, "/") {
				t.Fatalf("kept %q", s)
			}
		}
	})
}
