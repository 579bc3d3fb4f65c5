package whoami

import "html/template"

// page is the HTML view. html/template escapes every value.
var page = template.Must(template.New("whoami").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>whoami · sekisho</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d232b}
main{max-width:860px;margin:2rem auto;padding:0 1rem}
header{display:flex;justify-content:space-between;align-items:center}
h1{font-size:1.4rem;margin:0}
h2{font-size:1.05rem;margin:1.6rem 0 .5rem}
section{background:#fff;border:1px solid #dde1e6;border-radius:8px;padding:.8rem 1rem}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;vertical-align:top;padding:.25rem .5rem;border-bottom:1px solid #eef0f3}
th{width:14rem;font-weight:600;color:#4a5461}
td{font-family:ui-monospace,monospace;font-size:13px;word-break:break-all}
.badge{display:inline-block;padding:.1rem .6rem;border-radius:99px;font-weight:600}
.valid{background:#dcf5e3;color:#17643a}.invalid{background:#fde2e1;color:#9b1c1c}
.missing,.not-checked{background:#eceff3;color:#4a5461}
.muted{color:#6b7480}.warn{color:#9b1c1c;font-weight:600}
a.button{border:1px solid #c3c9d1;border-radius:6px;padding:.35rem .8rem;text-decoration:none;color:#1d232b;background:#fff}
</style>
</head>
<body>
<main>
<header>
<h1>whoami</h1>
<a class="button" href="/.sekisho/logout">Sign out</a>
</header>
<p class="muted">What the app behind sekisho receives for this request.</p>

<h2>Request</h2>
<section><table>
<tr><th>Method</th><td>{{.Method}}</td></tr>
<tr><th>Host</th><td>{{.Host}}</td></tr>
<tr><th>Path</th><td>{{.Path}}</td></tr>
<tr><th>X-Request-Id</th><td>{{or .RequestID "—"}}</td></tr>
</table></section>

<h2>Assertion</h2>
<section>
{{with .Assertion}}
<p><span class="badge {{if eq .Status "not checked"}}not-checked{{else}}{{.Status}}{{end}}">{{.Status}}</span>
{{if .Error}} <span>{{.Error}}</span>{{end}}</p>
{{range .Mismatches}}<p class="warn">Header mismatch: {{.}}</p>{{end}}
{{with .Claims}}
<table>
<tr><th>sub</th><td>{{.Subject}}</td></tr>
<tr><th>email</th><td>{{or .Email "—"}}</td></tr>
<tr><th>groups</th><td>{{range $i, $g := .Groups}}{{if $i}}, {{end}}{{$g}}{{else}}—{{end}}</td></tr>
<tr><th>sekisho_kind</th><td>{{.Kind}}</td></tr>
<tr><th>provider</th><td>{{.Provider}}</td></tr>
<tr><th>iss</th><td>{{.Issuer}}</td></tr>
<tr><th>aud (route)</th><td>{{.Audience}}</td></tr>
<tr><th>iat</th><td>{{.IssuedAt}}</td></tr>
<tr><th>exp</th><td>{{.Expiry}} (in {{.ExpiresIn}})</td></tr>
</table>
{{end}}
{{end}}
</section>

<h2>Identity headers</h2>
<section><table>
{{range .Identity}}<tr><th>{{.Name}}</th><td>{{.Value}}</td></tr>
{{else}}<tr><td class="muted">none</td></tr>{{end}}
</table></section>

<h2>Forwarding headers</h2>
<section><table>
{{range .Forwarded}}<tr><th>{{.Name}}</th><td>{{.Value}}</td></tr>
{{else}}<tr><td class="muted">none</td></tr>{{end}}
</table></section>

<h2>Other headers</h2>
<section><p class="muted">Names only; values are not shown.</p>
<p>{{range $i, $n := .Other}}{{if $i}}, {{end}}{{$n}}{{else}}none{{end}}</p></section>
</main>
</body>
</html>
`))
