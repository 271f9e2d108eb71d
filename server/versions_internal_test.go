package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestSpeaks: a node's state version is read from its /healthz; a build
// before versions says nothing there and speaks version 1, so a cluster
// with such a node never raises its version past 1; a node that does not
// answer holds the version where it is.
func TestSpeaks(t *testing.T) {
	tests := []struct {
		name, body string
		status     int
		want       uint64
		err        bool
	}{
		{"before versions", `{"status":"ok","node_id":3}`, 200, 1, false},
		{"this build", `{"status":"ok","node_id":3,"state_version":2}`, 200, 2, false},
		{"a later build", `{"status":"ok","state_version":7}`, 200, 7, false},
		{"unhealthy", `{}`, 503, 0, true},
		{"not JSON", `ok`, 200, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			s := &Server{peers: srv.Client()}
			got, err := s.speaks(context.Background(), strings.TrimPrefix(srv.URL, "http://"))
			if (err != nil) != tt.err || got != tt.want {
				t.Fatalf("speaks() = %d, %v; want %d, error %v", got, err, tt.want, tt.err)
			}
		})
	}
}
