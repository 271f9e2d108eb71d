package httpapi

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rafting/rafting/api"
	"github.com/rafting/rafting/server/fsm"
)

// The configuration store's decoders, fuzzed like parse_test.go's: any
// input decodes into a command the state machine applies without an
// internal error, or is a 4xx naming the field.

func FuzzParseKVPut(f *testing.F) {
	f.Add("app/flag", "on", "", "", "", int64(64))
	f.Add("app/flag", `{"text":"on","if_index":0}`, "application/json", "", "", int64(64))
	f.Add("app/flag", `{"value":"b24=","session":"sessA-0000000000"}`, "application/json; charset=utf-8", "", "sessA-0000000000", int64(64))
	f.Add("app/flag", `{"text":"on","value":"b24="}`, "application/json", "", "", int64(64))
	f.Add("app/flag", `{}`, "application/json", "if_index=3", "", int64(64))
	f.Add("app/flag", strings.Repeat("x", 65), "", "", "", int64(64))
	f.Add("app//flag", "x", "", "session=sessA-0000000000", "", int64(64))
	f.Add("app/flag", "x", "", "if_index=-1", "", int64(64))
	f.Add("app/flag", "x", "", "prefix=true", "", int64(64))
	f.Add("a/../b", "x", "text/plain", "", "", int64(1))
	f.Fuzz(func(t *testing.T, key, body, contentType, query, caller string, maxValue int64) {
		maxValue = min(max(maxValue, 0), api.MaxBodyBytes)
		r := request(http.MethodPut, body, map[string]string{"key": key}, "")
		r.URL.RawQuery = query
		r.Header.Set("Content-Type", contentType)
		r.Header.Set(api.HeaderSession, caller)
		cmd, err := parseKVPut(nil, r, maxValue, fuzzNow)
		if err != nil {
			wantClientError(t, err)
			return
		}
		if int64(len(cmd.Value)) > maxValue {
			t.Fatalf("a value of %d bytes decoded under max_value_bytes %d", len(cmd.Value), maxValue)
		}
		applyOK(t, fsm.OpKVPut, cmd)
	})
}

func FuzzParseKVTxn(f *testing.F) {
	f.Add(`{"compare":[{"key":"a","mod_index":0},{"key":"b","exists":true},{"key":"c","text":"x"},{"key":"d","version":2}],"put":[{"key":"a","text":"1"},{"key":"e","value":"eA==","session":"sessA-0000000000"}],"delete":[{"key":"b"}]}`, "")
	f.Add(`{"compare":[{"key":"a","mod_index":0,"exists":true}],"put":[{"key":"a","text":"1"}]}`, "")
	f.Add(`{"compare":[{"key":"a"}],"put":[{"key":"a","text":"1"}]}`, "")
	f.Add(`{"put":[{"key":"a"}]}`, "")
	f.Add(`{"put":[{"key":"a","text":""}],"delete":[{"key":"a"}]}`, "")
	f.Add(`{"compare":[{"key":"a","value":""}]}`, "")
	f.Add(`{"put":[{"key":"a","text":"1"}]}`, "sessA-0000000000")
	f.Add(`{"put":[`+strings.Repeat(`{"key":"k","text":""},`, 70)+`{"key":"z","text":""}]}`, "")
	f.Fuzz(func(t *testing.T, body, caller string) {
		r := request(http.MethodPost, body, nil, "")
		r.Header.Set(api.HeaderSession, caller)
		r.Header.Set(api.HeaderSequence, "1")
		cmd, err := parseKVTxn(nil, r, fuzzNow)
		if err != nil {
			wantClientError(t, err)
			return
		}
		applyOK(t, fsm.OpKVTxn, cmd)
	})
}

func FuzzParseKVDelete(f *testing.F) {
	f.Add("app/flag", "")
	f.Add("app/flag", "if_index=7")
	f.Add("app", "prefix=true")
	f.Add("", "prefix=true")
	f.Add("app", "prefix=true&if_index=1")
	f.Add("app/", "prefix=maybe")
	f.Fuzz(func(t *testing.T, key, query string) {
		r := request(http.MethodDelete, "", map[string]string{"key": key}, "")
		r.URL.RawQuery = query
		cmd, err := parseKVDelete(r, fuzzNow)
		if err != nil {
			wantClientError(t, err)
			return
		}
		applyOK(t, fsm.OpKVDelete, cmd)
	})
}

func FuzzParseKVQuery(f *testing.F) {
	f.Add("app/flag", "")
	f.Add("app", "prefix=true&limit=10&start=app/b&index=7&wait=1s&epoch=2&consistent=true")
	f.Add("", "prefix=true")
	f.Add("", "")
	f.Add("app", "prefix=true&raw=true")
	f.Add("app", "start=app/b")
	f.Add("app", "prefix=true&limit=0")
	f.Add("app", "raw=true&index=1")
	f.Fuzz(func(t *testing.T, key, query string) {
		r := request(http.MethodGet, "", map[string]string{"key": key}, "")
		r.URL.RawQuery = query
		q, err := parseKVQuery(r, 5*time.Minute)
		if err != nil {
			wantClientError(t, err)
			return
		}
		sm := fuzzTenant()
		if q.prefix {
			if kvs, _, _ := sm.KVList(q.key, q.start, q.limit, kvPageBytes); len(kvs) != 0 {
				t.Fatal("an empty store listed keys")
			}
		} else if _, ok, _ := sm.KV(q.key); ok {
			t.Fatal("an empty store has a key")
		}
		if q.limit < 1 || q.limit > api.MaxKVPage || q.wait > 5*time.Minute {
			t.Fatalf("a query decoded out of bounds: %+v", q)
		}
	})
}
