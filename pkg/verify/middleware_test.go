package verify

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestMiddleware(t *testing.T) {
	k := newKey(t, "k1")
	v := staticVerifier(t, newClock(), k)
	good := signES(t, k, goodClaims())
	h := v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := ClaimsFromContext(r.Context())
		if !ok {
			t.Error("next called without claims")
			return
		}
		w.Write([]byte(c.Subject))
	}))
	tests := []struct {
		name       string
		values     []string
		wantStatus int
		wantBody   string
	}{
		{name: "good", values: []string{good}, wantStatus: http.StatusOK, wantBody: "alice"},
		{name: "missing", wantStatus: http.StatusUnauthorized},
		{name: "garbage", values: []string{"x.y.z"}, wantStatus: http.StatusUnauthorized},
		{name: "duplicate_header_smuggling", values: []string{good, "x.y.z"}, wantStatus: http.StatusUnauthorized},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			for _, val := range tc.values {
				r.Header.Add(HeaderName, val)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.wantStatus {
				t.Fatalf("status = %d, want %d", w.Code, tc.wantStatus)
			}
			if tc.wantBody != "" && w.Body.String() != tc.wantBody {
				t.Errorf("body = %q, want %q", w.Body.String(), tc.wantBody)
			}
		})
	}
}

func TestClaimsFromContextEmpty(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	if c, ok := ClaimsFromContext(r.Context()); ok || c != nil {
		t.Errorf("ClaimsFromContext = %v, %v on a bare context", c, ok)
	}
}
