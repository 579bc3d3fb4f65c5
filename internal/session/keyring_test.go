package session

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNewKeyringErrors(t *testing.T) {
	tests := []struct {
		name string
		keys [][]byte
		want string
	}{
		{name: "no_keys", keys: nil, want: "at least one key"},
		{name: "short_first_key", keys: [][]byte{testKey(1)[:16]}, want: "key 0 is 16 bytes, want 32"},
		{name: "long_second_key", keys: [][]byte{testKey(1), append(testKey(2), 0)}, want: "key 1 is 33 bytes, want 32"},
		{name: "empty_key", keys: [][]byte{testKey(1), testKey(2), {}}, want: "key 2 is 0 bytes"},
		{name: "duplicate_key", keys: [][]byte{testKey(1), testKey(2), testKey(1)}, want: "keys 0 and 2 have the same key id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := NewKeyring(tc.keys)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewKeyring error = %v, want it to contain %q", err, tc.want)
			}
			if k != nil {
				t.Errorf("NewKeyring returned a keyring with an error")
			}
		})
	}
}

func TestKeyring(t *testing.T) {
	key := testKey(3)
	k := testRing(t, key)
	pt := []byte("hello")
	sealed := k.Seal(pt, []byte("ad"))
	if len(sealed) != len(pt)+Overhead {
		t.Errorf("sealed length %d, want %d", len(sealed), len(pt)+Overhead)
	}
	if again := k.Seal(pt, []byte("ad")); bytes.Equal(again, sealed) {
		t.Error("two seals of the same plaintext are equal: nonce reused")
	}
	key[0] ^= 0xff // the ring must not alias the caller's key
	tests := []struct {
		name    string
		sealed  []byte
		ad      string
		wantErr string
	}{
		{name: "round_trip", sealed: sealed, ad: "ad"},
		{name: "other_additional_data", sealed: sealed, ad: "ae", wantErr: "failed authentication"},
		{name: "empty_additional_data", sealed: sealed, ad: "", wantErr: "failed authentication"},
		{name: "too_short", sealed: sealed[:Overhead-1], ad: "ad", wantErr: "shorter than"},
		{name: "unknown_key_id", sealed: append([]byte{0, 0, 0, 0}, sealed[keyIDSize:]...), ad: "ad", wantErr: "not in the keyring"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := k.Open(tc.sealed, []byte(tc.ad))
			if tc.wantErr == "" {
				if err != nil || !bytes.Equal(got, pt) {
					t.Errorf("Open = %q, %v; want %q", got, err, pt)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Open error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestParseKey(t *testing.T) {
	key := make([]byte, KeySize)
	for i := range key {
		key[i] = byte(250 - i) // high bytes so std and url alphabets differ
	}
	std := base64.StdEncoding.EncodeToString(key)
	url := base64.URLEncoding.EncodeToString(key)
	if std == url {
		t.Fatal("test key does not exercise both alphabets")
	}
	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{name: "std_padded", in: std},
		{name: "std_unpadded", in: strings.TrimRight(std, "=")},
		{name: "url_padded", in: url},
		{name: "url_unpadded", in: strings.TrimRight(url, "=")},
		{name: "surrounding_space", in: "  " + std + "\n"},
		{name: "empty", in: "  ", wantErr: "empty"},
		{name: "not_base64", in: "this is not a key!", wantErr: "not valid base64"},
		{name: "mixed_alphabets", in: "+-" + std[2:], wantErr: "not valid base64"},
		{name: "sixteen_bytes", in: base64.StdEncoding.EncodeToString(key[:16]), wantErr: "16 bytes, want 32"},
		{name: "hex_text", in: strings.Repeat("ab", 32), wantErr: "48 bytes, want 32"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseKey(tc.in)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("ParseKey: %v", err)
				}
				if diff := cmp.Diff(key, got); diff != "" {
					t.Errorf("ParseKey (-want +got):\n%s", diff)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseKey error = %v, want it to contain %q", err, tc.wantErr)
			}
			if in := strings.TrimSpace(tc.in); err != nil && in != "" && strings.Contains(err.Error(), in) {
				t.Errorf("ParseKey error %q repeats the key text", err)
			}
		})
	}
}

func TestLoadOrCreateKeyFile(t *testing.T) {
	t.Run("creates_then_loads_same_key", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "data", "session.key")
		k1, err := LoadOrCreateKeyFile(path)
		if err != nil {
			t.Fatalf("create: %v", err)
		}
		if len(k1) != KeySize {
			t.Fatalf("key is %d bytes", len(k1))
		}
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if runtime.GOOS != "windows" && st.Mode().Perm() != 0o600 {
			t.Errorf("key file mode %04o, want 0600", st.Mode().Perm())
		}
		k2, err := LoadOrCreateKeyFile(path)
		if err != nil {
			t.Fatalf("load: %v", err)
		}
		if diff := cmp.Diff(k1, k2); diff != "" {
			t.Errorf("second load differs:\n%s", diff)
		}
		entries, _ := os.ReadDir(filepath.Dir(path))
		if len(entries) != 1 {
			t.Errorf("data dir holds %d entries, want only the key file (temp file left behind?)", len(entries))
		}
	})
	t.Run("concurrent_first_start_agrees", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "session.key")
		keys := make([][]byte, 8)
		errs := make([]error, len(keys))
		var wg sync.WaitGroup
		for i := range keys {
			wg.Go(func() { keys[i], errs[i] = LoadOrCreateKeyFile(path) })
		}
		wg.Wait()
		onDisk, err := LoadOrCreateKeyFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for i := range keys {
			if errs[i] != nil {
				t.Errorf("caller %d: %v", i, errs[i])
			} else if !bytes.Equal(keys[i], onDisk) {
				t.Errorf("caller %d got a key that is not the one on disk", i)
			}
		}
	})

	valid := base64.StdEncoding.EncodeToString(testKey(7)) + "\n"
	tests := []struct {
		name    string
		content string
		mode    os.FileMode
		unixOny bool
		want    string
	}{
		{name: "group_readable", content: valid, mode: 0o640, unixOny: true, want: "mode 0640, open to group or others"},
		{name: "world_readable", content: valid, mode: 0o604, unixOny: true, want: "mode 0604"},
		{name: "wrong_length", content: base64.StdEncoding.EncodeToString(testKey(7)[:31]), mode: 0o600, want: "31 bytes, want 32"},
		{name: "garbage", content: "not base64 at all", mode: 0o600, want: "not valid base64"},
		{name: "empty_file", content: "", mode: 0o600, want: "empty"},
		{name: "too_large", content: strings.Repeat("A", 1000), mode: 0o600, want: "too large"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.unixOny && runtime.GOOS == "windows" {
				t.Skip("no Unix modes")
			}
			path := filepath.Join(t.TempDir(), "session.key")
			if err := os.WriteFile(path, []byte(tc.content), tc.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tc.mode); err != nil { // umask may have narrowed it
				t.Fatal(err)
			}
			_, err := LoadOrCreateKeyFile(path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("LoadOrCreateKeyFile error = %v, want it to contain %q", err, tc.want)
			}
			if got, _ := os.ReadFile(path); string(got) != tc.content {
				t.Error("a refused key file was overwritten")
			}
		})
	}
	t.Run("directory_in_place_of_file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "session.key")
		if err := os.Mkdir(path, 0o700); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadOrCreateKeyFile(path); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("LoadOrCreateKeyFile error = %v, want not a regular file", err)
		}
	})
}
