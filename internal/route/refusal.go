package route

import (
	"errors"
	"net/http"

	"github.com/sekisho/sekisho/internal/apikey"
)

// refusal is what a program is told when its API key was refused: a
// status, a stable machine-readable code for the JSON body and a message.
// ok is false for other refusals (a stale session cookie, a bearer token),
// which get the ordinary sign-in answer.
//
// The codes never tell an unknown key from a wrong secret (both
// api_key_invalid), so they are no oracle for guessing keys; the others are
// given only for a key whose secret matched, to its holder.
func refusal(err error) (status int, code, message string, ok bool) {
	switch {
	case errors.Is(err, apikey.ErrRevoked):
		return http.StatusUnauthorized, "api_key_revoked", "This API key was revoked. Ask for a new one.", true
	case errors.Is(err, apikey.ErrExpired):
		return http.StatusUnauthorized, "api_key_expired", "This API key has expired. Ask for a new one.", true
	case errors.Is(err, apikey.ErrOutOfScope):
		return http.StatusUnauthorized, "api_key_out_of_scope", "This API key is not valid for this route, method or path.", true
	case errors.Is(err, apikey.ErrAmbiguous):
		return http.StatusUnauthorized, "api_key_ambiguous", "The request carries more than one sekisho API key; send one.", true
	case errors.Is(err, apikey.ErrUnavailable):
		return http.StatusServiceUnavailable, "api_key_store_unavailable", "API keys cannot be checked right now. Try again in a moment.", true
	case errors.Is(err, apikey.ErrUnknown), errors.Is(err, apikey.ErrWrongSecret), errors.Is(err, apikey.ErrMalformed):
		return http.StatusUnauthorized, "api_key_invalid", "This API key is not valid.", true
	}
	return 0, "", "", false
}
