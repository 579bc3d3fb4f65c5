package main

import (
	"context"
	"html/template"
	"net/http"
	"time"
)

const ssoCookie = "testop_sso"

var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Test provider: sign in</title></head>
<body><main>
<h1>Test provider</h1>
{{if .Error}}<p id="op-error" role="alert">{{.Error}}</p>{{end}}
<form method="post" action="/login">
<input type="hidden" name="id" value="{{.ID}}">
<label for="op-username">Username</label> <input id="op-username" name="username" autocomplete="username">
<label for="op-password">Password</label> <input id="op-password" name="password" type="password" autocomplete="current-password">
<button type="submit">Continue</button>
</form>
</main></body></html>
`))

// login is the provider's own sign-in page at /login.
type login struct {
	st       *storage
	callback func(context.Context, string) string
}

func (l *login) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		id := r.URL.Query().Get("authRequestID")
		if c, err := r.Cookie(ssoCookie); err == nil {
			if sess, ok := l.st.ssoFor(c.Value, id); ok {
				if err := l.st.completeLogin(id, sess.user, sess.authTime); err == nil {
					http.Redirect(w, r, l.callback(r.Context(), id), http.StatusFound)
					return
				}
			}
		}
		l.render(w, id, "", http.StatusOK)
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		id, user := r.PostFormValue("id"), r.PostFormValue("username")
		if !l.st.checkPassword(user, r.PostFormValue("password")) {
			l.render(w, id, "Wrong username or password.", http.StatusUnauthorized)
			return
		}
		now := time.Now()
		if err := l.st.completeLogin(id, user, now); err != nil {
			l.render(w, id, err.Error(), http.StatusBadRequest)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: ssoCookie, Value: l.st.newSSO(user, now), Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
		http.Redirect(w, r, l.callback(r.Context(), id), http.StatusFound)
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (l *login) render(w http.ResponseWriter, id, msg string, status int) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	loginPage.Execute(w, map[string]string{"ID": id, "Error": msg})
}
