package local

import (
	"strings"
	"testing"
)

func TestCheckPassword(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pw      string
		wantErr string
	}{
		{"twelve ascii", "abcdefghijkl", ""},
		{"no composition rules", "aaaaaaaaaaaa", ""},
		{"twelve multibyte characters", "関所関所関所関所関所関所", ""},
		{"max bytes", strings.Repeat("a", MaxPasswordBytes), ""},
		{"empty", "", "at least 12"},
		{"eleven", "abcdefghijk", "at least 12"},
		{"four multibyte characters is 12 bytes but 4 characters", "関所関所", "at least 12"},
		{"hashing DoS: one byte over", strings.Repeat("a", MaxPasswordBytes+1), "limit is 256"},
		{"hashing DoS: one megabyte", strings.Repeat("a", 1<<20), "limit is 256"},
		{"invalid utf-8", "abcdefghijkl\xff", "UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckPassword(tc.pw)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("CheckPassword = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("CheckPassword = %v, want error containing %q", err, tc.wantErr)
			}
			if len(tc.pw) >= 4 && strings.Contains(err.Error(), tc.pw) {
				t.Errorf("error %q contains the password", err)
			}
		})
	}
}

func TestGeneratePassword(t *testing.T) {
	seen := map[string]bool{}
	counts := map[rune]int{}
	const n = 200
	for range n {
		pw, err := GeneratePassword()
		if err != nil {
			t.Fatal(err)
		}
		if len(pw) != GeneratedPasswordLen {
			t.Fatalf("len(%q) = %d, want %d", pw, len(pw), GeneratedPasswordLen)
		}
		if err := CheckPassword(pw); err != nil {
			t.Fatalf("generated %q fails the policy: %v", pw, err)
		}
		if strings.Trim(pw, passwordAlphabet) != "" {
			t.Fatalf("%q has characters outside the alphabet", pw)
		}
		if strings.ContainsAny(pw, "0O1lI5S2Z8B") {
			t.Fatalf("%q has an ambiguous character", pw)
		}
		if seen[pw] {
			t.Fatalf("GeneratePassword repeated %q", pw)
		}
		seen[pw] = true
		for _, r := range pw {
			counts[r]++
		}
	}
	// 4000 draws over 50 characters: each expected 80 times. A character
	// never drawn means the alphabet is not fully used.
	if len(counts) != len(passwordAlphabet) {
		t.Errorf("%d of %d alphabet characters drawn in %d passwords", len(counts), len(passwordAlphabet), n)
	}
}
