package sdk

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"os"
	"strings"
)

// newSessionID returns a session ID: 128 random bits from crypto/rand, in
// 22 characters of unpadded base64url.
func newSessionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics instead)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// newInstanceID returns an instance ID for an instance that gave none: the
// host name, made valid for api.ValidateName, then a random suffix, e.g.
// "web-7f3a-5c1e9b2d" on host "web-7f3a".
func newInstanceID() string {
	host, _ := os.Hostname()
	host, _, _ = strings.Cut(host, ".") // the short host name says enough
	var sb strings.Builder
	for _, c := range host {
		if sb.Len() >= 100 {
			break
		}
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			sb.WriteRune(c)
		} else {
			sb.WriteByte('-')
		}
	}
	name := strings.Trim(sb.String(), "-_")
	if name == "" {
		name = "instance"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return name + "-" + hex.EncodeToString(b[:])
}

// defaultAddress is the address of an instance that gave none: the host
// name. It suits master-standby services that nobody calls; a served
// instance gives its host:port.
func defaultAddress() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		return "localhost"
	}
	return host
}
