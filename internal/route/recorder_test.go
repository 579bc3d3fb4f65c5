package route

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// A stream may be flushed before anything is written: the audit line still
// gets its status, and the flush reaches the client's connection, whether
// or not the writer underneath reports flush errors.
func TestRecorderFlush(t *testing.T) {
	for _, tc := range []struct {
		name  string
		flush func(http.ResponseWriter) error
	}{
		{"response_controller", func(w http.ResponseWriter) error { return http.NewResponseController(w).Flush() }},
		{"flusher", func(w http.ResponseWriter) error { w.(http.Flusher).Flush(); return nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			under := httptest.NewRecorder()
			rec := &recorder{ResponseWriter: under}
			if err := tc.flush(rec); err != nil {
				t.Fatalf("flush: %v", err)
			}
			if rec.status != http.StatusOK || !under.Flushed || under.Code != http.StatusOK {
				t.Errorf("after a flush: recorded status %d, flushed %v, sent status %d; want 200, true, 200", rec.status, under.Flushed, under.Code)
			}
		})
	}
}
