// Package authn finds who made a request. Each credential kind (session
// cookie now; API keys, bearer tokens and IAP assertions later) is an
// Authenticator, and Chain tries them in order.
package authn

import (
	"errors"
	"net/http"

	"github.com/sekisho/sekisho/internal/identity"
	"github.com/sekisho/sekisho/internal/session"
)

// Sessions authenticates by the sealed session cookie. A stale-but-valid
// session gets a refreshed cookie (sliding idle timeout), written to w.
type Sessions struct {
	Codec *session.Codec
}

// Authenticate returns the session's identity, the anonymous identity when
// there is no cookie, or an error saying why a cookie was refused.
func (s Sessions) Authenticate(w http.ResponseWriter, r *http.Request) (identity.Identity, error) {
	sess, err := s.Codec.Read(r)
	if errors.Is(err, session.ErrNoSession) {
		return identity.Identity{}, nil
	}
	if err != nil {
		return identity.Identity{}, err
	}
	if s.Codec.NeedsRefresh(sess) {
		if fresh, err := s.Codec.Refresh(w, sess); err == nil {
			sess = fresh
		}
	}
	return sess.Identity(), nil
}
