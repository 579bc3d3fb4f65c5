package store

import (
	"strings"
	"testing"
)

// FuzzCanonicalName checks that an accepted name is short, plain lowercase
// ASCII from the allowed set, a fixed point, and equal to the input up to
// ASCII case: no two distinct spellings outside ASCII case reach one account.
func FuzzCanonicalName(f *testing.F) {
	for _, s := range []string{"alice", "Alice", "a.b_c@d-e", "", "\u212aaren", "al ice", strings.Repeat("A", 65), "İ", "a\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := CanonicalName(in)
		if err != nil {
			if got != "" {
				t.Fatalf("CanonicalName(%q) returned %q with error %v", in, got, err)
			}
			return
		}
		if len(got) == 0 || len(got) > MaxNameLen {
			t.Fatalf("CanonicalName(%q) = %q: length %d out of 1..%d", in, got, len(got), MaxNameLen)
		}
		if strings.Trim(got, "abcdefghijklmnopqrstuvwxyz0123456789._@-") != "" {
			t.Fatalf("CanonicalName(%q) = %q has a character outside [a-z0-9._@-]", in, got)
		}
		if !strings.EqualFold(in, got) || len(in) != len(got) {
			t.Fatalf("CanonicalName(%q) = %q is not the input up to ASCII case", in, got)
		}
		if again, err := CanonicalName(got); err != nil || again != got {
			t.Fatalf("CanonicalName(%q) = %q, %v; want a fixed point", got, again, err)
		}
	})
}
