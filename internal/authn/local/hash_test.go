package local

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// cheap are small argon2id parameters so tests that hash many times stay fast.
var cheap = Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

func mustHashWith(t testing.TB, pw string, p Params) string {
	t.Helper()
	h, err := hashWith(pw, p)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestHashVerifyRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		pw   string
	}{
		{"ascii", "correct horse battery staple"},
		{"unicode", "関所を通る手形は十二文字以上"},
		{"max length", strings.Repeat("x", MaxPasswordBytes)},
		{"empty", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := Hash(tc.pw)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
				t.Errorf("Hash = %q, want the default PHC prefix", h)
			}
			for _, c := range []struct {
				pw   string
				want bool
			}{
				{tc.pw, true},
				{tc.pw + "x", false},
				{strings.ToUpper(tc.pw) + "!", false},
			} {
				got, err := Verify(h, c.pw)
				if err != nil || got != c.want {
					t.Errorf("Verify(hash of %q, %q) = %v, %v; want %v", tc.pw, c.pw, got, err, c.want)
				}
			}
			if NeedsRehash(h) {
				t.Errorf("NeedsRehash(fresh hash) = true")
			}
		})
	}
}

func TestHashSaltIsRandom(t *testing.T) {
	a, b := mustHashWith(t, "same password", cheap), mustHashWith(t, "same password", cheap)
	if a == b {
		t.Errorf("two hashes of one password are equal: %q", a)
	}
}

func TestHashRefusesOversizePassword(t *testing.T) {
	if _, err := Hash(strings.Repeat("x", MaxPasswordBytes+1)); err == nil {
		t.Error("Hash of an oversize password = nil error")
	}
	h := mustHashWith(t, "pw", cheap)
	if ok, err := Verify(h, strings.Repeat("x", 1<<20)); ok || err != nil {
		t.Errorf("Verify with a 1 MiB password = %v, %v; want false, nil", ok, err)
	}
}

// TestVerifyRefusesTamperedHash pins that a hash altered in the database
// (or simply corrupt) is an error, never a match and never a huge allocation.
func TestVerifyRefusesTamperedHash(t *testing.T) {
	good := mustHashWith(t, "pw", cheap) // $argon2id$v=19$m=64,t=1,p=1$salt$key
	parts := strings.Split(good, "$")
	salt, key := parts[4], parts[5]
	with := func(params string) string { return "$argon2id$v=19$" + params + "$" + salt + "$" + key }
	for _, tc := range []struct {
		name string
		hash string
	}{
		{"memory above 1 GiB (memory exhaustion)", with("m=1048577,t=1,p=1")},
		{"memory 4 GiB (memory exhaustion)", with("m=4294967295,t=1,p=1")},
		{"memory overflowing uint32", with("m=4294967296,t=1,p=1")},
		{"time above 100 (CPU exhaustion)", with("m=64,t=101,p=1")},
		{"time zero (argon2 panic)", with("m=64,t=0,p=1")},
		{"threads zero (argon2 panic)", with("m=64,t=1,p=0")},
		{"threads above 64", with("m=1024,t=1,p=65")},
		{"threads 256 wraps uint8", with("m=4096,t=1,p=256")},
		{"memory below 8 KiB per thread", with("m=8,t=1,p=2")},
		{"leading zero", with("m=064,t=1,p=1")},
		{"plus sign", with("m=+64,t=1,p=1")},
		{"minus sign", with("m=64,t=-1,p=1")},
		{"parameters reordered", with("t=1,m=64,p=1")},
		{"extra parameter", with("m=64,t=1,p=1,k=1")},
		{"missing parameter", with("m=64,t=1")},
		{"empty hash", ""},
		{"argon2i downgrade", "$argon2i$v=19$m=64,t=1,p=1$" + salt + "$" + key},
		{"old version", "$argon2id$v=16$m=64,t=1,p=1$" + salt + "$" + key},
		{"missing version", "$argon2id$m=64,t=1,p=1$" + salt + "$" + key},
		{"bcrypt", "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"},
		{"salt too short", with("m=64,t=1,p=1")[:len("$argon2id$v=19$m=64,t=1,p=1$")] + "c2FsdA$" + key},
		{"key too short", with("m=64,t=1,p=1")[:len("$argon2id$v=19$m=64,t=1,p=1$")] + salt + "$AAAAAAAAAA"},
		{"empty key (matches anything truncated)", "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$"},
		{"padded base64", "$argon2id$v=19$m=64,t=1,p=1$" + salt + "==$" + key},
		{"url base64", "$argon2id$v=19$m=64,t=1,p=1$" + strings.NewReplacer("+", "-", "/", "_").Replace(salt) + "-_$" + key},
		{"line break in salt", "$argon2id$v=19$m=64,t=1,p=1$" + salt[:4] + "\n" + salt[4:] + "$" + key},
		{"trailing field", good + "$x"},
		{"trailing space", good + " "},
		{"huge input", good + strings.Repeat("A", 10000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, err := Verify(tc.hash, "pw")
			if ok || err == nil {
				t.Fatalf("Verify(%.80q) = %v, %v; want false and an error", tc.hash, ok, err)
			}
			if !errors.Is(err, errHashFormat) {
				t.Errorf("err = %v, want errHashFormat", err)
			}
			if !NeedsRehash(tc.hash) {
				t.Errorf("NeedsRehash(tampered) = false")
			}
		})
	}
}

func TestParseHashAcceptsBounds(t *testing.T) {
	salt8, key16 := "AAAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAAAA"
	for _, tc := range []struct {
		name string
		hash string
		want Params
	}{
		{"lowest", "$argon2id$v=19$m=8,t=1,p=1$" + salt8 + "$" + key16, Params{8, 1, 1, 8, 16}},
		{"highest", "$argon2id$v=19$m=1048576,t=100,p=64$" + strings.Repeat("A", 86) + "$" + strings.Repeat("A", 171),
			Params{1 << 20, 100, 64, 64, 128}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _, _, err := parseHash(tc.hash)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, p); diff != "" {
				t.Errorf("params (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNeedsRehash(t *testing.T) {
	def, err := Hash("pw")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		hash string
		want bool
	}{
		{"default params", def, false},
		{"weaker params", mustHashWith(t, "pw", cheap), true},
		{"longer salt", mustHashWith(t, "pw", Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 32, KeyLen: 32}), true},
		{"garbage", "plain", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := NeedsRehash(tc.hash); got != tc.want {
				t.Errorf("NeedsRehash = %v, want %v", got, tc.want)
			}
		})
	}
}

// FuzzParseHash feeds arbitrary strings (a tampered database) to the PHC
// parser. An accepted string must be exactly what encodeHash writes for the
// parsed values, and its parameters must be within the bounds that keep a
// login's memory and CPU in check.
func FuzzParseHash(f *testing.F) {
	for _, s := range []string{
		"$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc",
		"$argon2id$v=19$m=64,t=1,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA",
		"$argon2id$v=19$m=4294967295,t=1,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA",
		"$argon2id$v=19$m=064,t=1,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA",
		"$argon2id$v=19$m=64,t=1,p=1$AAAAAAAAAAB$AAAAAAAAAAAAAAAAAAAAAA",
		"$argon2i$v=19$m=64,t=1,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA",
		"$argon2id$v=19$m=64,t=1,p=1$AAAA\nAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA",
		"", "$", "$$$$$", "$argon2id$v=19$m=,t=,p=$$",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, salt, key, err := parseHash(s)
		if err != nil {
			if !errors.Is(err, errHashFormat) {
				t.Fatalf("parseHash(%q) error %v does not wrap errHashFormat", s, err)
			}
			return
		}
		if p.Memory > maxMemoryKiB || p.Time < 1 || p.Time > maxTime || p.Threads < 1 || p.Threads > maxThreads ||
			p.Memory < 8*uint32(p.Threads) {
			t.Fatalf("parseHash(%q) accepted out-of-bounds params %+v", s, p)
		}
		if int(p.SaltLen) != len(salt) || int(p.KeyLen) != len(key) ||
			len(salt) < minSaltLen || len(salt) > maxSaltLen || len(key) < minKeyLen || len(key) > maxKeyLen {
			t.Fatalf("parseHash(%q): salt %d / key %d bytes, params %+v", s, len(salt), len(key), p)
		}
		if enc := encodeHash(p, salt, key); enc != s {
			t.Fatalf("parseHash(%q) accepted a non-canonical form; re-encodes to %q", s, enc)
		}
		if p.Memory <= 256 && p.Time <= 2 {
			// Cheap enough to run: Verify must not panic on anything parsed.
			if _, err := Verify(s, "pw"); err != nil {
				t.Fatalf("Verify(%q) after a successful parse: %v", s, err)
			}
		}
	})
}
