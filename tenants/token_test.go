package tenants

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/rafting/rafting/api"
)

func TestNewSecret(t *testing.T) {
	seen := make(map[string]bool)
	for range 100 {
		s := NewSecret()
		if len(s) != 43 {
			t.Fatalf("len(NewSecret()) = %d, want 43", len(s))
		}
		if err := ValidateSecret("secret", s); err != nil {
			t.Fatalf("ValidateSecret(NewSecret()) = %v", err)
		}
		if seen[s] {
			t.Fatalf("NewSecret() repeated %q", s)
		}
		seen[s] = true
	}
}

func TestValidateSecret(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{strings.Repeat("a", 22), false}, // long enough, and guessable
		{strings.Repeat("Z", 128), false},
		{strings.Repeat("abc", 20), false},
		{"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-", true},
		{"Qm9vQm9vQmFyQmF6MTIzNA", true}, // 22 characters of base64url
		{NewSecret(), true},
		{"", false},
		{strings.Repeat("a", 21), false},
		{strings.Repeat("a", 129), false},
		{strings.Repeat("a", 21) + "=", false},
		{strings.Repeat("a", 21) + "+", false},
		{strings.Repeat("a", 21) + "/", false},
		{strings.Repeat("a", 21) + ".", false},
		{strings.Repeat("a", 30) + "é", false},
		{strings.Repeat("a", 30) + "\x00", false},
	}
	for _, tt := range tests {
		err := ValidateSecret("secret", tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateSecret(%q) = %v, want ok %v", tt.in, err, tt.ok)
			continue
		}
		if err != nil {
			var ae *api.Error
			if !errors.As(err, &ae) || ae.Code != api.CodeBadRequest || !strings.HasPrefix(ae.Message, "secret: ") {
				t.Errorf("ValidateSecret(%q) = %#v, want bad_request naming secret", tt.in, err)
			}
			if len(tt.in) > 0 && strings.Contains(err.Error(), tt.in) {
				t.Errorf("ValidateSecret(%q) = %v quotes the secret", tt.in, err)
			}
		}
	}
}

func TestTokenRoundTrip(t *testing.T) {
	tenants := []string{"acme", "a", "default", "x-1-y", strings.Repeat("z", 63), "0"}
	secrets := []string{NewSecret(), "____________________________", "-_-_-_-_-_-_-_-_-_-_-_-_", strings.Repeat("A", 128)}
	for _, tenant := range tenants {
		for _, secret := range secrets {
			tok := FormatToken(tenant, secret)
			if want := "rft_" + tenant + "_" + secret; tok.Reveal() != want {
				t.Fatalf("FormatToken() = %q, want %q", tok.Reveal(), want)
			}
			got, ok := ParseToken(tok.Reveal())
			if !ok || got != tenant {
				t.Errorf("ParseToken(%q) = %q, %v, want %q, true", tok.Reveal(), got, ok, tenant)
			}
		}
	}
}

func TestParseTokenMalformed(t *testing.T) {
	secret := strings.Repeat("s", 43)
	tests := []string{
		"",
		"rft_",
		"rft__",
		"rft_acme",
		"rft_acme_",
		"rft__" + secret,           // empty tenant
		"RFT_acme_" + secret,       // prefix is case-sensitive
		"rft-acme_" + secret,       // wrong prefix
		" rft_acme_" + secret,      // leading space
		"rft_acme_" + secret + " ", // trailing space
		"rft_Acme_" + secret,       // upper case tenant
		"rft_ac.me_" + secret,      // bad tenant byte
		"rft_" + strings.Repeat("a", 64) + "_" + secret, // tenant too long
		"rft_acme_" + strings.Repeat("s", 21),           // secret too short
		"rft_acme_" + strings.Repeat("s", 129),          // secret too long
		"rft_acme_" + secret[:30] + "=",                 // padding
		"rft_acme_" + secret[:30] + "/x",                // std alphabet
		"Bearer rft_acme_" + secret,
		"admin-token-from-a-file",
	}
	for _, in := range tests {
		if tenant, ok := ParseToken(in); ok {
			t.Errorf("ParseToken(%q) = %q, true, want false", in, tenant)
		}
	}
}

func FuzzParseToken(f *testing.F) {
	f.Add("rft_acme_" + strings.Repeat("s", 43))
	f.Add("rft_a_" + strings.Repeat("_", 22))
	f.Add("rft__")
	f.Add("rft_acme")
	f.Add("")
	f.Add("rft_" + strings.Repeat("a", 64) + "_" + strings.Repeat("s", 22))
	f.Add("rft_acme_\xff\xfe" + strings.Repeat("s", 22))
	f.Fuzz(func(t *testing.T, s string) {
		tenant, ok := ParseToken(s)
		if !ok {
			if tenant != "" {
				t.Fatalf("ParseToken(%q) = %q, false, want empty tenant", s, tenant)
			}
			_ = Token(s).String() // must not panic either
			return
		}
		if err := api.ValidateTenantName("tenant", tenant); err != nil {
			t.Fatalf("ParseToken(%q) = %q, an invalid tenant: %v", s, tenant, err)
		}
		secret := strings.TrimPrefix(s, TokenPrefix+tenant+"_")
		if err := secretFormat("secret", secret); err != nil {
			t.Fatalf("ParseToken(%q) ok with secret %q: %v", s, secret, err)
		}
		if got := FormatToken(tenant, secret).Reveal(); got != s {
			t.Fatalf("FormatToken(ParseToken(%q)) = %q", s, got)
		}
		if str, want := Token(s).String(), TokenPrefix+tenant+"_…"; str != want {
			t.Fatalf("Token(%q).String() = %q, want %q", s, str, want)
		}
	})
}

func TestTokenRedacts(t *testing.T) {
	secret := NewSecret()
	tok := FormatToken("acme", secret)
	admin := Token("the-admin-token-" + secret)

	if got, want := tok.String(), "rft_acme_…"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got, want := admin.String(), "[redacted]"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	for _, format := range []string{"%v", "%s", "%q", "%#v", "%+v", "%x", "%d", "%10.3s"} {
		for _, tk := range []Token{tok, admin} {
			if got := fmt.Sprintf(format, tk); strings.Contains(got, secret) || strings.Contains(got, fmt.Sprintf("%x", secret)) {
				t.Errorf("Sprintf(%q, token) = %q leaks the secret", format, got)
			}
		}
	}
	if got := fmt.Sprintf("%v", struct{ T Token }{tok}); strings.Contains(got, secret) {
		t.Errorf("Sprintf(struct) = %q leaks the secret", got)
	}

	var buf bytes.Buffer
	for _, h := range []slog.Handler{slog.NewTextHandler(&buf, nil), slog.NewJSONHandler(&buf, nil)} {
		slog.New(h).Info("created", "token", tok, "admin", admin)
	}
	if strings.Contains(buf.String(), secret) || !strings.Contains(buf.String(), "rft_acme_…") {
		t.Errorf("slog output = %q, want the token redacted", buf.String())
	}

	if tok.Reveal() != "rft_acme_"+secret {
		t.Errorf("Reveal() = %q", tok.Reveal())
	}
}
