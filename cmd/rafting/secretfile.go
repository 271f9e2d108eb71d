package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
)

// maxSecretFile bounds what a token or secret file may hold.
const maxSecretFile = 64 << 10

// readSecretFile reads a token or a secret from file for flag (named in
// errors), as ssh reads a private key: a file that group or others may
// read or write is refused, so a secret left 0644 by the usual umask is
// noticed before it is used, not after it leaked. Surrounding whitespace
// (the newline an editor or echo adds) is dropped; an empty file is an
// error.
func readSecretFile(flag, file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", fmt.Errorf("%s: %w", flag, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("%s: %w", flag, err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return "", fmt.Errorf("%s %s: mode %04o gives group or others access: the secret may have leaked; "+
			"make it private (chmod 600 %s, or write it with install -m 600) and consider rotating it", flag, file, perm, file)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return "", fmt.Errorf("%s: %w", flag, err)
	}
	if len(b) > maxSecretFile {
		return "", fmt.Errorf("%s %s: larger than %d bytes: not a token", flag, file, maxSecretFile)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s %s is empty", flag, file)
	}
	return s, nil
}
