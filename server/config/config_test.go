package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rafting/rafting/api"
)

func valid() Config {
	c := DefaultConfig()
	c.NodeID, c.DataDir, c.RaftAddress = 1, "/tmp/x", "127.0.0.1:7071"
	return c
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		want string // substring of the error; "" = valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"no id", func(c *Config) { c.NodeID = 0 }, "NodeID"},
		{"id too big", func(c *Config) { c.NodeID = 1000 }, "NodeID"},
		{"no data", func(c *Config) { c.DataDir = "" }, "DataDir"},
		{"no raft", func(c *Config) { c.RaftAddress = "" }, "RaftAddress"},
		{"bad raft listen", func(c *Config) { c.RaftListen = "7071" }, "RaftListen"},
		{"raft listen", func(c *Config) { c.RaftListen = "127.0.0.1:7171" }, ""},
		{"bad api", func(c *Config) { c.APIAddress = "nope" }, "APIAddress"},
		{"join and initial", func(c *Config) {
			c.Join = "127.0.0.1:7070"
			c.InitialCluster = map[uint64]string{1: "127.0.0.1:7071"}
		}, "exclude"},
		{"initial without self", func(c *Config) { c.InitialCluster = map[uint64]string{2: "127.0.0.1:7171"} }, "no entry for NodeID 1"},
		{"initial other address", func(c *Config) { c.InitialCluster = map[uint64]string{1: "127.0.0.1:9"} }, "names 127.0.0.1:9"},
		{"public api without tls", func(c *Config) { c.APIAddress = "0.0.0.0:7070" }, "--insecure"},
		{"public raft without mtls", func(c *Config) { c.RaftAddress = "10.0.0.1:7071" }, "--peer-ca"},
		{"public with insecure", func(c *Config) { c.APIAddress, c.RaftAddress, c.Insecure = "0.0.0.0:7070", "10.0.0.1:7071", true }, ""},
		{"public with tls", func(c *Config) {
			c.APIAddress, c.TLSCert, c.TLSKey = "0.0.0.0:7070", "c", "k"
		}, ""},
		{"cert without key", func(c *Config) { c.TLSCert = "c" }, "TLSKey"},
		{"peer ca alone", func(c *Config) { c.PeerCA = "ca" }, "PeerCA"},
		{"bad logdb", func(c *Config) { c.LogDB = "huge" }, "LogDB"},
		{"no snapshots", func(c *Config) { c.SnapshotEntries = 0 }, "SnapshotEntries"},
		{"weak admin token", func(c *Config) { c.AdminToken = "a" }, "too weak"},
		{"long weak admin token", func(c *Config) { c.AdminToken = strings.Repeat("a", 64) }, "too weak"},
		{"strong admin token", func(c *Config) { c.AdminToken = "rfa_pT3q8Vx0LmNc2ZrYhW5sKd7Gb1" }, ""},
		{"negative budget", func(c *Config) { c.AnswerBytesPerSecond = -1 }, "AnswerBytesPerSecond"},
		{"replicas 5", func(c *Config) { c.Replicas = 5 }, ""},
		{"replicas 6", func(c *Config) { c.Replicas = 6 }, "Replicas"},
		{"zone", func(c *Config) { c.Zone = "eu-west-1a" }, ""},
		{"bad zone", func(c *Config) { c.Zone = "eu west" }, "Zone"},
		{"negative dead-after", func(c *Config) { c.DeadAfter = -1 }, "DeadAfter"},
	}
	for _, tt := range tests {
		c := valid()
		tt.edit(&c)
		err := c.Validate()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: Validate() = %v, want nil", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: Validate() = %v, want an error naming %q", tt.name, err, tt.want)
		}
	}
}

func TestParseInitialCluster(t *testing.T) {
	m, err := ParseInitialCluster("1=127.0.0.1:7071, 2=127.0.0.1:7171")
	if err != nil || len(m) != 2 || m[2] != "127.0.0.1:7171" {
		t.Fatalf("ParseInitialCluster = %v, %v", m, err)
	}
	if FormatInitialCluster(m) != "1=127.0.0.1:7071,2=127.0.0.1:7171" {
		t.Fatalf("FormatInitialCluster = %q", FormatInitialCluster(m))
	}
	for _, bad := range []string{"1", "x=127.0.0.1:1", "0=127.0.0.1:1", "1=nope", "1=127.0.0.1:1,1=127.0.0.1:2"} {
		if _, err := ParseInitialCluster(bad); err == nil {
			t.Errorf("ParseInitialCluster(%q) accepted", bad)
		}
	}
}

func FuzzParseInitialCluster(f *testing.F) {
	f.Add("1=127.0.0.1:7071,2=127.0.0.1:7171")
	f.Add("=,=")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseInitialCluster(s)
		if err != nil {
			return
		}
		again, err := ParseInitialCluster(FormatInitialCluster(m))
		if err != nil || len(again) != len(m) {
			t.Fatalf("round trip of %q: %v %v", s, again, err)
		}
	})
}

// TestReadSecretFile: a token file is read trimmed, and refused when group
// or others may read it (as ssh refuses a key) or when it is empty.
func TestReadSecretFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // umask
			t.Fatal(err)
		}
		return p
	}
	if got, err := ReadSecretFile(write("ok", " secret\n", 0o600)); err != nil || got != "secret" {
		t.Fatalf("ReadSecretFile(0600) = %q, %v", got, err)
	}
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660} {
		if _, err := ReadSecretFile(write("open", "secret", mode)); err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Fatalf("ReadSecretFile(%04o) = %v, want refused", mode, err)
		}
	}
	if _, err := ReadSecretFile(write("empty", " \n", 0o600)); err == nil {
		t.Fatal("an empty token file was read")
	}
}

// TestDefaultWriteBytes: the write-byte budget's default is sized for a
// 2-core node (docs/DECISIONS.md, "Refusals that cost less"): at most
// 2 MiB/s a tenant on a node (at 8 MiB/s, 1 MB bodies read and refused
// took three servers on 2 cores from 21 to 65 % of a core), and at least
// twice the largest body a request may have (api.MaxBodyBytes), so that a
// write within the tenant's quotas is never refused for its size alone.
func TestDefaultWriteBytes(t *testing.T) {
	got := DefaultConfig().WriteBytesPerSecond
	if got > 2<<20 || got < 2*api.MaxBodyBytes {
		t.Fatalf("DefaultConfig().WriteBytesPerSecond = %d, want within [%d, %d]", got, 2*api.MaxBodyBytes, 2<<20)
	}
}
